"""An attacker's review of the newest surfaces (H15), each attack kept as a test.

Raw-socket attacks run against real gunicorn (the slow-client worker,
``ops/workers.py``): request smuggling (Content-Length with Transfer-Encoding,
two Content-Lengths, obs-fold), bytes pipelined after an early 413 or 408, and
oversized heads. Pure app logic (download names, tus metadata, upload names) is
attacked through WebTest on ``create_app``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import webtest

from tests.servers import Server, start_gunicorn, wait_until
from tests.test_nginx_body_offload import site as offload_site  # noqa: F401

STATUS_LINE = re.compile(rb'HTTP/1\.[01] (\d{3}) ')
# A request hidden in a body: if a server ever parses it, the store lists itself
# (or stores a second object) and the attacker's bytes become a request.
SMUGGLED = b'GET /files HTTP/1.1\r\nHost: x\r\n\r\n'


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp('attacks')
    started = start_gunicorn(
        work, work / 'store', max_upload_bytes=64, header_timeout=2, body_idle_timeout=2
    )
    try:
        yield started
    finally:
        started.stop()


def exchange(server: Server, raw: bytes, limit: float = 8.0) -> bytes:
    """Send ``raw`` at once; everything the server answers until it closes."""
    with socket.create_connection(('127.0.0.1', server.port), timeout=limit) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        data = b''
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in STATUS_LINE.findall(answer)]


@pytest.mark.parametrize(
    'head',
    [
        # CL.TE: a front end using Content-Length forwards SMUGGLED as body
        b'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n',
        b'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n',
        # two lengths that disagree
        b'Content-Length: 5\r\nContent-Length: 37\r\n',
        b'Content-Length: 5, 37\r\n',
        # obs-fold hides a second Transfer-Encoding from some parsers
        b'X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n',
        # a coding other than chunked last: the length is unknowable
        b'Transfer-Encoding: chunked, identity\r\n',
        b'Transfer-Encoding: xchunked\r\n',
        b'Transfer-Encoding : chunked\r\n',
    ],
    ids=[
        'cl-te',
        'te-cl',
        'two-cl',
        'cl-list',
        'obs-fold',
        'te-not-last',
        'te-unknown',
        'te-space',
    ],
)
def test_ambiguous_body_framing_is_refused_and_the_connection_closed(
    server: Server, head: bytes
) -> None:
    body = b'0\r\n\r\n' + SMUGGLED
    answer = exchange(server, b'POST / HTTP/1.1\r\nHost: x\r\n' + head + b'\r\n' + body)
    assert statuses(answer) and statuses(answer)[0] in (400, 501), answer[:300]
    # one answer only: the hidden GET /files was never parsed as a request
    assert len(statuses(answer)) == 1, answer[:600]
    assert b'"files"' not in answer and b'[' not in answer.split(b'\r\n\r\n', 1)[-1]


def test_bytes_after_an_early_413_are_never_parsed_as_a_request(server: Server) -> None:
    # 100 bytes over a 64-byte limit: the "body" is a pipelined request
    body = (SMUGGLED * 4)[:100]
    raw = f'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n'
    answer = exchange(server, raw.encode() + body)
    assert statuses(answer) == [413], answer[:600]


def test_bytes_after_a_body_deadline_408_are_never_parsed(server: Server) -> None:
    # announced 60 bytes, sends 10, then stays silent past the 2 s idle deadline
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        head = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n'
        sock.sendall(head + b'0123456789')
        data = b''
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(SMUGGLED)  # too late: must not become a request
    assert statuses(data) in ([408], [400]), data[:600]


@pytest.mark.parametrize(
    'raw',
    [
        b'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 9000 + b'\r\n\r\n',
        b'GET /' + b'a' * 9000 + b' HTTP/1.1\r\nHost: x\r\n\r\n',
        b'GET /healthz HTTP/1.1\r\nHost: x\r\n'
        + b''.join(b'X-%d: 1\r\n' % i for i in range(120))
        + b'\r\n',
    ],
    ids=['long-field', 'long-line', 'many-fields'],
)
def test_oversized_heads_are_refused_with_one_answer(
    server: Server, raw: bytes
) -> None:
    answer = exchange(server, raw + SMUGGLED)
    codes = statuses(answer)
    assert codes and codes[0] in (400, 414, 431), answer[:300]
    assert len(codes) == 1, answer[:600]


# -- app logic through WebTest -------------------------------------------------------
ALICE = 'alice-token-0123456789abcdef'
BOB = 'bob-token-0123456789abcdef01'
TUS = {'Tus-Resumable': '1.0.0'}
PATCH_TYPE = {'Content-Type': 'application/offset+octet-stream'}
PAGE = b'<html><script>alert(document.domain)</script></html>'
ORIGIN = 'https://app.example'


def bearer(token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}'}


@pytest.fixture
def two_users(make_app: Callable[..., webtest.TestApp], tmp_path: Path):
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{ALICE} read,write,delete\n{BOB} read,write,delete\n')
    tokens.chmod(0o600)
    return make_app(tokens_file=tokens, cors_origins=(ORIGIN,))


def finished_partial(app: webtest.TestApp, token: str, data: bytes) -> str:
    created = app.post(
        '/uploads',
        headers={
            **TUS,
            **bearer(token),
            'Upload-Length': str(len(data)),
            'Upload-Concat': 'partial',
        },
    )
    url = created.headers['Location']
    app.patch(
        url, data, headers={**TUS, **PATCH_TYPE, **bearer(token), 'Upload-Offset': '0'}
    )
    return url


def test_concatenating_another_tokens_partial_upload_is_404_and_stores_nothing(
    two_users, store_dir: Path
) -> None:
    secret = b'alice-only bytes'
    theirs = finished_partial(two_users, ALICE, secret)
    mine = finished_partial(two_users, BOB, b'x')
    resp = two_users.post(
        '/uploads',
        headers={**TUS, **bearer(BOB), 'Upload-Concat': f'final;{mine} {theirs}'},
        expect_errors=True,
    )
    assert resp.status_int == 404, resp.status
    digest = hashlib.sha256(b'x' + secret).hexdigest()
    two_users.head(f'/files/{digest}', headers=bearer(BOB), status=404)


@pytest.mark.parametrize(
    'name',
    [
        'invoice\u202efdp.exe'.encode(),  # shows as invoiceexe.pdf
        b'x' * 256,  # the link it hands out would be a 400
        b'',
    ],
    ids=['bidi', 'too-long', 'empty'],
)
def test_tus_filename_metadata_that_cannot_name_a_download_is_refused_at_creation(
    two_users, name: bytes
) -> None:
    meta = 'filename ' + base64.b64encode(name).decode() if name else 'filename '
    resp = two_users.post(
        '/uploads',
        headers={
            **TUS,
            **bearer(ALICE),
            'Upload-Length': '2',
            'Upload-Metadata': meta.strip(),
        },
        expect_errors=True,
    )
    if not name:  # "filename" alone (no value) carries no name: nothing to check
        assert resp.status_int == 201, resp.status
        return
    assert resp.status_int == 400, resp.status
    assert 'Upload-Metadata filename' in resp.json['detail']


@pytest.mark.parametrize(
    'path',
    ['/invoice%E2%80%AEfdp.exe', '/a%C2%85b', '/a%E2%81%A6b', '/static', '/STATIC'],
    ids=['rlo', 'c1-nel', 'lri', 'static', 'static-upper'],
)
def test_named_upload_refuses_spoofing_names_and_the_static_prefix(
    two_users, path: str
) -> None:
    resp = two_users.put(path, b'hi', headers=bearer(ALICE), expect_errors=True)
    assert resp.status_int == 400, resp.status
    assert resp.content_type == 'application/problem+json'


@pytest.mark.parametrize(
    'query',
    ['filename=invoice%E2%80%AEfdp.exe', 'filename=a%E2%81%A7b.txt'],
    ids=['rlo', 'fsi'],
)
def test_download_names_with_bidi_overrides_are_400(two_users, query: str) -> None:
    digest = two_users.post('/', b'x', headers=bearer(ALICE)).text.strip()
    resp = two_users.get(
        f'/files/{digest}?{query}', headers=bearer(ALICE), expect_errors=True
    )
    assert resp.status_int == 400, resp.status
    assert 'Content-Disposition' not in resp.headers


def test_right_to_left_names_with_marks_are_still_accepted(two_users) -> None:
    # Hebrew with an RLM (U+200F): a real name, not an override that reorders
    name = '\u05e7\u05d5\u05d1\u05e5\u200f.txt'
    put = two_users.put(f'/{quote(name)}', b'rtl', headers=bearer(ALICE))
    digest = put.text.strip()
    got = two_users.get(put.headers['Location'], headers=bearer(ALICE))
    assert got.body == b'rtl'
    assert quote(name, safe='') in got.headers['Content-Disposition']
    assert digest in put.headers['Location']


@pytest.mark.parametrize('ext', ['mht', 'mhtml', 'eml', 'html', 'svg', 'xml', 'js'])
def test_inline_download_never_gets_an_active_type_and_is_nosniff(
    two_users, ext: str
) -> None:
    digest = two_users.post('/', PAGE, headers=bearer(ALICE)).text.strip()
    for path in (f'/files/{digest}', '/'):
        query = f'file_hash={digest}&' if path == '/' else ''
        resp = two_users.get(
            f'{path}?{query}filename=page.{ext}&inline=1', headers=bearer(ALICE)
        )
        assert resp.headers['Content-Type'] == 'application/octet-stream', ext
        assert resp.headers['X-Content-Type-Options'] == 'nosniff'


def test_named_text_download_is_nosniff(two_users) -> None:
    digest = two_users.post('/', PAGE, headers=bearer(ALICE)).text.strip()
    resp = two_users.get(
        f'/files/{digest}?filename=a.txt&inline=1', headers=bearer(ALICE)
    )
    assert resp.headers['Content-Type'].startswith('text/plain')
    assert resp.headers['X-Content-Type-Options'] == 'nosniff'


@pytest.mark.parametrize(
    'origin',
    [
        'null',
        'https://app.example.evil.example',
        'https://evil.app.example',
        'https://APP.example',
        'http://app.example',
        'https://app.example:443',
        'https://app.example/',
        'https://app.example, https://evil.example',
    ],
)
def test_cors_only_the_exact_origin_is_echoed(two_users, origin: str) -> None:
    pre = two_users.options(
        '/uploads',
        headers={'Origin': origin, 'Access-Control-Request-Method': 'POST'},
        expect_errors=True,
    )
    assert 'Access-Control-Allow-Origin' not in pre.headers
    get = two_users.get('/files', headers={**bearer(ALICE), 'Origin': origin})
    assert 'Access-Control-Allow-Origin' not in get.headers
    assert 'Access-Control-Allow-Credentials' not in get.headers
    assert 'Origin' in get.headers.get('Vary', '')


def test_landing_page_escapes_a_hostile_host_and_script_name(two_users) -> None:
    evil = '"><script>alert(1)</script>'
    resp = two_users.get(
        '/',
        headers={'Accept': 'text/html', 'Host': f'x{evil}'},
        extra_environ={'SCRIPT_NAME': f'/p{evil}'},
    )
    assert '<script>alert(1)' not in resp.text
    assert resp.headers['Content-Security-Policy'].startswith("default-src 'none'")


@pytest.mark.parametrize(
    'path',
    [
        '/static/..%2Fupload.html',
        '/static/%2e%2e/static/upload.js',
        '/static/upload.html',
        '/static/upload.js%00.css',
        '/static/UPLOAD.JS',
        '/static/upload.js/',
    ],
)
def test_static_serves_nothing_outside_its_allow_list(two_users, path: str) -> None:
    resp = two_users.get(path, expect_errors=True)
    assert resp.status_int in (400, 404), (path, resp.status)
    assert b'<html' not in resp.body.lower()


# -- the nginx body offload (real nginx + gunicorn) ------------------------------
def test_missing_lookup_through_the_body_offload_site_reads_its_body(
    offload_site,  # noqa: F811 (the fixture imported above)
) -> None:
    import requests

    absent = hashlib.sha256(b'never stored').hexdigest()
    resp = requests.post(
        offload_site.nginx.url + '/files/missing', json=[absent], timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {'missing': [absent]}
    offload_site.settle()  # nginx's body file is gone, nothing left in tmp/


def test_forged_x_body_file_naming_a_body_nginx_is_writing_is_refused(
    offload_site,  # noqa: F811 (the fixture imported above)
) -> None:
    """A local user with a write token, straight to gunicorn on loopback, names
    another client's body file while nginx is still writing it (the names are
    sequential): without the site's key nothing is read, stored or hashed."""
    import requests

    from tests.test_nginx_body_offload import AUTH, WRITER

    site = offload_site
    total, sent = 3 * 1024 * 1024, 2 * 1024 * 1024
    victim = bytes(range(256)) * (total // 256)
    objects = lambda: sorted(  # noqa: E731
        p.name for p in site.store.glob('??/*') if p.parent.name != 'tmp'
    )
    before = objects()
    port = int(site.nginx.url.rsplit(':', 1)[1])
    with socket.create_connection(('127.0.0.1', port), timeout=30) as victim_sock:
        victim_sock.sendall(
            b'POST /files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            + f'Authorization: Bearer {WRITER}\r\n'.encode()
            + f'Content-Length: {total}\r\n\r\n'.encode()
            + victim[:sent]
        )
        in_flight = lambda: [  # noqa: E731
            p for p in site.bodies.iterdir() if p.stat().st_size >= 1024 * 1024
        ]
        wait_until(lambda: site.bodies.is_dir() and in_flight(), 30, 'a body file')
        (body,) = in_flight()
        for guess in ({}, {'X-Body-Offload-Key': ''}, {'X-Body-Offload-Key': 'x' * 43}):
            headers = {
                **AUTH,
                **guess,
                'X-Body-File': str(body),
                'X-Body-Length': str(body.stat().st_size),
            }
            resp = requests.post(site.app.url + '/files', headers=headers, timeout=30)
            assert resp.status_code == 400, (guess, resp.text)
            assert resp.headers['Content-Type'] == 'application/problem+json'
            assert hashlib.sha256(victim[:sent]).hexdigest() not in resp.text
        assert objects() == before  # nothing adopted, nothing stored
        victim_sock.sendall(victim[sent:])
        answer = b''
        for _ in range(1000):  # bounded; nginx closes after the answer
            chunk = victim_sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert STATUS_LINE.match(answer) and STATUS_LINE.match(answer)[1] == b'200', answer
    want = hashlib.sha256(victim).hexdigest()
    assert want.encode() in answer  # the victim's own upload is intact
    assert objects() == sorted([*before, want])
    site.settle()


# -- ?filename= on all three read paths (real gunicorn, nginx accel and direct) ---
@pytest.fixture(scope='module')
def paths():
    from tests.three_paths import three_paths

    with three_paths() as started:
        started.ports['app'] = started.servers[0].port
        yield started


@pytest.mark.parametrize('via', ['app', 'accel', 'direct'])
@pytest.mark.parametrize(
    ('name', 'kind'),
    [('a.txt', 'text/plain'), ('page.mht', 'application/octet-stream')],
)
def test_named_reads_are_nosniff_and_never_active_on_every_path(
    paths, via: str, name: str, kind: str
) -> None:
    digest = max(paths.objects, key=lambda h: len(paths.objects[h]))  # 1 MiB
    for target in (
        f'/files/{digest}?filename={name}&inline=1',
        f'/?file_hash={digest}&filename={name}&inline=1',
    ):
        answer = paths.request(via, target)
        assert answer.status == 200, (via, target, answer.status)
        assert (answer.get('Content-Type') or '').startswith(kind), answer.headers
        assert answer.get('X-Content-Type-Options') == 'nosniff', (via, answer.headers)
        assert (answer.get('Content-Disposition') or '').startswith('inline; ')


# -- route scopes of an existing upload, in every spelling (real gunicorn) ---------
@pytest.fixture(scope='module')
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp('guarded')
    tokens = work / 'tokens'
    tokens.write_text(f'{ALICE} read,write,delete\n')
    tokens.chmod(0o600)
    started = start_gunicorn(work, work / 'store', tokens_file=tokens)
    started.extra['tokens'] = tokens
    try:
        yield started
    finally:
        started.stop()


def raw_request(server: Server, method: str, target: str, headers: dict) -> int:
    head = f'{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
    head += ''.join(f'{k}: {v}\r\n' for k, v in headers.items())
    codes = statuses(exchange(server, head.encode() + b'\r\n'))
    assert len(codes) == 1, (method, target, codes)
    return codes[0]


def test_no_spelling_of_an_upload_url_skips_its_write_scope(guarded: Server) -> None:
    create = {**TUS, **bearer(ALICE), 'Upload-Length': '5', 'Content-Length': '0'}
    head = b'POST /uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
    head += ''.join(f'{k}: {v}\r\n' for k, v in create.items()).encode()
    answer = exchange(guarded, head + b'\r\n')
    assert statuses(answer) == [201], answer[:300]
    upload = re.search(rb'/uploads/([A-Za-z0-9_-]{32})', answer).group(1).decode()
    # The owner loses "write" (hot reload): the owner check can no longer hide a
    # skipped scope behind a 404, so any spelling that skips it answers 2xx.
    guarded.extra['tokens'].write_text(f'{ALICE} read\n')
    wait_until(
        lambda: raw_request(guarded, 'POST', '/uploads', create) == 403,
        10,
        'the tokens file reload',
    )
    time.sleep(2.5)  # every worker looks at the file once a second (RELOAD_CHECK)
    spellings = [
        f'/uploads/{upload}',
        f'//uploads/{upload}',
        f'/uploads//{upload}',
        f'/./uploads/{upload}',
        f'/%75ploads/{upload}',
        f'/uploads%2F{upload}',
        f'/files/../uploads/{upload}',
        f'/uploads/{upload}/',
        f'/uploads/{upload}?x=1',
        f'/uploads/{upload}%00',
    ]
    patch = {'Upload-Offset': '0', 'Content-Length': '0', **PATCH_TYPE}
    for target in spellings:
        for method in ('HEAD', 'PATCH', 'DELETE'):
            headers = {**TUS, **bearer(ALICE), **(patch if method == 'PATCH' else {})}
            code = raw_request(guarded, method, target, headers)
            assert code in (400, 403, 404, 405), (method, target, code)
    assert (
        raw_request(guarded, 'HEAD', f'/uploads/{upload}', {**TUS, **bearer(ALICE)})
        == 403
    )
