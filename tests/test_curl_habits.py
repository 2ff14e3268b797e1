"""HTTP for curl users (issue 13): ``curl -T``, the browser page on ``GET /``,
and one ``Allow`` order with a useful hint on every 405."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest

from tests.conftest import sha256
from tests.servers import (
    filestorectl,
    free_port,
    require_binary,
    start_gunicorn,
    start_nginx,
)
from wsgi_store.app import create_app
from wsgi_store.config import Config

DATA = b'holiday photo bytes\n'
H = sha256(DATA)
BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
WRITER = 'writer-token-000000000000001'
READER = 'reader-token-000000000000001'


def stored(store_dir: Path) -> list[str]:
    return sorted(p.name for p in store_dir.glob('??/*'))


# -- PUT /NAME (curl -T FILE http://host/) -------------------------------------
@pytest.mark.parametrize('path', ['/photo.jpg', '/files/photo.jpg'])
def test_put_name_stores_the_body_and_answers_like_post(
    app: webtest.TestApp, store_dir: Path, path: str
) -> None:
    resp = app.put(path, DATA)
    assert resp.status_int == 200
    assert resp.text == H + '\n'
    assert resp.headers['Location'] == f'/files/{H}?filename=photo.jpg'
    assert stored(store_dir) == [H]
    assert app.get(f'/files/{H}').body == DATA
    again = app.put(path, DATA, headers={'Accept': 'application/json'})
    assert again.json == {
        'hash': H,
        'algorithm': 'sha256',
        'size': len(DATA),
        'created': False,
    }


def test_put_files_name_is_a_named_upload(app: webtest.TestApp) -> None:
    """``PUT /files/<not a hash>`` is the named upload; a hash is still checked."""
    assert app.put('/files/nothex', DATA).location.endswith(f'{H}?filename=nothex')
    short_hex = H[:10]  # hex of the wrong length is a name too
    assert app.put(f'/files/{short_hex}', DATA).location.endswith(short_hex)
    wrong = sha256(b'other')
    resp = app.put(f'/files/{wrong}', DATA, status=400)
    assert resp.json['type'].endswith('/digest-mismatch')
    assert app.put(f'/files/{H.upper()}', DATA).location == f'/files/{H}'


@pytest.mark.parametrize(
    ('path', 'filename'),
    [
        ('/my%20photo%3F%23.jpg', 'my%20photo%3F%23.jpg'),
        ('/%C3%A9t%C3%A9.txt', '%C3%A9t%C3%A9.txt'),
        ('/a%26b%3Dc', 'a%26b%3Dc'),
        ('/x;p', 'x%3Bp'),
    ],
)
def test_put_name_location_is_percent_encoded(
    app: webtest.TestApp, path: str, filename: str
) -> None:
    resp = app.put(path, DATA)
    assert resp.headers['Location'] == f'/files/{H}?filename={filename}'


@pytest.mark.parametrize(
    'path',
    [
        '/%2E%2E',
        '/.',
        '/FILES',
        '/Healthz',
        '/uploads',
        '/metrics',  # metrics are off in this app: the name stays reserved
        '/a%5Cb',
        '/tab%09name',
        '/' + 'n' * 256,
        '/files/..',
        '/%252e%252e%252fcanary',  # double-encoded: refused, never a name
        '/files/%252e%252e',
    ],
)
def test_put_bad_or_reserved_name_is_400_and_stores_nothing(
    make_app: Callable[..., webtest.TestApp], store_dir: Path, path: str
) -> None:
    app = make_app(metrics=False)
    resp = app.put(path, DATA, status=400, expect_errors=True)
    assert resp.content_type == 'application/problem+json'
    assert stored(store_dir) == []


def test_put_name_uses_the_upload_engine(
    make_app: Callable[..., webtest.TestApp], store_dir: Path
) -> None:
    app = make_app(max_upload_bytes=10)
    app.put('/big.bin', b'x' * 11, status=413)
    good = base64.b64encode(hashlib.sha256(b'small').digest()).decode()
    app.put('/s.txt', b'small', headers={'Content-Digest': f'sha-256=:{good}:'})
    app.put(
        '/t.txt', b'other', headers={'Content-Digest': f'sha-256=:{good}:'}, status=400
    )
    assert stored(store_dir) == [sha256(b'small')]


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'])
def test_other_methods_on_a_name_stay_404(app: webtest.TestApp, method: str) -> None:
    app.request('/photo.jpg', method=method, status=404)


def test_put_name_needs_the_write_scope(store_dir: Path, tmp_path: Path) -> None:
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{WRITER} write\n{READER} read\n')
    tokens.chmod(0o600)
    config = Config(store_dir=store_dir, tokens_file=tokens)
    app = webtest.TestApp(
        create_app(config), extra_environ={'wsgi.input_terminated': True}
    )
    app.put('/photo.jpg', DATA, status=401)
    app.put(
        '/photo.jpg', DATA, headers={'Authorization': f'Bearer {READER}'}, status=403
    )
    assert stored(store_dir) == []
    app.put('/photo.jpg', DATA, headers={'Authorization': f'Bearer {WRITER}'})
    assert stored(store_dir) == [H]


@pytest.mark.e2e
def test_real_curl_upload_file_to_root_and_to_files(tmp_path: Path) -> None:
    """What a user types, against real gunicorn: ``curl -fsS -T FILE URL/``."""
    photo = tmp_path / 'my photo.jpg'
    photo.write_bytes(DATA)
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=2)
    try:
        for url in (server.url + '/', server.url + '/files/'):
            out = subprocess.run(
                ['curl', '-fsS', '-i', '-T', str(photo), url],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            # curl -T asks for 100-continue first; the final answer follows
            assert 'HTTP/1.1 200 OK' in out, out
            location = f'location: /files/{H}?filename=my%20photo.jpg'
            assert location in out.lower(), out
            assert out.endswith(H + '\n'), out
    finally:
        server.stop()
    assert 'Traceback' not in server.log.read_text()


@pytest.mark.e2e
def test_real_curl_upload_through_the_generated_nginx_site(tmp_path: Path) -> None:
    """``curl -T`` through ``filestorectl nginx-config``'s site reaches PUT /NAME."""
    require_binary('nginx', '/usr/sbin/nginx')
    photo = tmp_path / 'photo.jpg'
    photo.write_bytes(DATA)
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=1, threads=2)
    port = free_port()
    try:
        generated = filestorectl(
            'nginx-config',
            '--store', str(store),
            '--port', str(server.port),
            '--listen-port', f'127.0.0.1:{port}',
            '--access-log', str(tmp_path / 'site.log'),
            '--no-direct-reads',
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        site = start_nginx(tmp_path, generated.stdout, port)
        try:
            for url in (site.url + '/', site.url + '/files/'):
                out = subprocess.run(
                    ['curl', '-fsS', '-i', '-T', str(photo), url],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout.lower()
                assert f'location: /files/{H}?filename=photo.jpg' in out, out
            refused = subprocess.run(
                ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-T',
                 str(photo), site.url + '/files'],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout  # fmt: skip
            assert refused == '405'
        finally:
            site.stop()
    finally:
        server.stop()


# -- 405: one Allow order, and a hint --------------------------------------------
ROUTES = {
    '/': 'GET, HEAD, POST, DELETE',
    '/files': 'GET, HEAD, POST',
    '/files/missing': 'POST',
    f'/files/{H}': 'GET, HEAD, PUT, DELETE',
    '/healthz': 'GET, HEAD',
    '/readyz': 'GET, HEAD',
    '/metrics': 'GET, HEAD',
    '/openapi.json': 'GET, HEAD',
}
METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE')


@pytest.mark.parametrize('path', list(ROUTES))
def test_every_405_lists_allow_in_one_order(app: webtest.TestApp, path: str) -> None:
    allowed = ROUTES[path].split(', ')
    refused = [m for m in METHODS if m not in allowed]
    assert 'OPTIONS' in refused
    for method in refused:
        resp = app.request(path, method=method, status=405)
        assert resp.headers['Allow'] == ROUTES[path], (method, path)
        if method == 'HEAD':
            continue  # no body to read the detail from
        detail = resp.json['detail']
        assert detail.startswith(f'{method} {path} is not allowed'), detail
        assert f'{allowed[0]} {path}' in detail, detail


def test_put_root_is_405_and_says_how_to_upload(app: webtest.TestApp) -> None:
    resp = app.put('/', DATA, status=405)
    assert resp.headers['Allow'] == 'GET, HEAD, POST, DELETE'
    assert 'use POST /' in resp.json['detail']
    assert 'PUT /NAME' in resp.json['detail']


def test_put_files_is_405_and_says_how_to_upload(app: webtest.TestApp) -> None:
    resp = app.put('/files', DATA, status=405)
    assert resp.headers['Allow'] == 'GET, HEAD, POST'
    assert (
        'use POST / or POST /files, or PUT /NAME or PUT /files/NAME'
        in (resp.json['detail'])
    )


def test_put_on_the_lookup_route_hints_at_uploads_not_at_the_lookup(
    app: webtest.TestApp,
) -> None:
    resp = app.put('/files/missing', DATA, status=405)
    assert resp.headers['Allow'] == 'POST'
    detail = resp.json['detail']
    assert 'to upload, use POST / or POST /files' in detail
    assert 'PUT /files/missing/NAME' not in detail


# -- GET / from a browser --------------------------------------------------------
def test_get_root_from_a_browser_is_a_short_html_page(app: webtest.TestApp) -> None:
    resp = app.get('/', headers={'Accept': BROWSER})
    assert resp.content_type == 'text/html'
    assert 'curl -fsS -T photo.jpg http://localhost:80/' in resp.text
    assert 'href="/openapi.json"' in resp.text
    assert resp.headers['Vary'] == 'Accept'
    assert "default-src 'none'" in resp.headers['Content-Security-Policy']
    head = app.head('/', headers={'Accept': BROWSER})
    assert head.status_int == 200 and head.body == b''


@pytest.mark.parametrize(
    'accept', [None, '*/*', 'application/json', 'text/plain', 'text/html;q=0.1, */*']
)
def test_get_root_from_curl_and_api_clients_stays_400(
    app: webtest.TestApp, accept: str | None
) -> None:
    headers = {'Accept': accept} if accept else {}
    resp = app.get('/', headers=headers, status=400)
    assert resp.content_type != 'text/html'


def test_get_root_page_escapes_the_host(app: webtest.TestApp) -> None:
    resp = app.get(
        '/', headers={'Accept': BROWSER, 'Host': 'x"><script>alert(1)</script>'}
    )
    assert '<script>' not in resp.text


def test_browser_with_file_hash_still_downloads(app: webtest.TestApp) -> None:
    app.post('/', DATA)
    resp = app.get(f'/?file_hash={H}', headers={'Accept': BROWSER})
    assert resp.body == DATA


def test_allow_order_is_one_fixed_order_including_patch() -> None:
    from wsgi_store.http.methods import order_allow

    assert order_allow(['DELETE', 'OPTIONS', 'PATCH', 'get', 'HEAD']) == (
        'GET, HEAD, PATCH, DELETE'
    )
    assert order_allow(['POST', ' PUT', ' GET']) == 'GET, POST, PUT'
