"""CORS (``--cors-origin``), the upload page on ``GET /`` and its ``/static/`` assets.

Unit level (WebTest over a real filesystem store); the browsers themselves are in
``tests/test_browser.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest

from tests.conftest import sha256
from wsgi_store.app import create_app
from wsgi_store.config import Config, ConfigError
from wsgi_store.ops.cli import config_from, given_flags
from wsgi_store.ops.cli_parser import build_parser

ORIGIN = 'http://127.0.0.1:8123'
OTHER = 'http://127.0.0.1:8124'
BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
DATA = b'bytes from a web app\n'
H = sha256(DATA)
TUS = {'Tus-Resumable': '1.0.0'}
WRITER = 'writer-token-0000000000000002'


def preflight(origin: str, method: str = 'PATCH') -> dict[str, str]:
    return {
        'Origin': origin,
        'Access-Control-Request-Method': method,
        'Access-Control-Request-Headers': 'tus-resumable,upload-offset,content-type',
    }


@pytest.fixture
def cors_app(make_app: Callable[..., webtest.TestApp]) -> webtest.TestApp:
    return make_app(cors_origins=(ORIGIN,))


# -- configuration ----------------------------------------------------------------
def test_cors_origins_from_env_are_split_and_normalised() -> None:
    env = {'WSGI_STORE_CORS_ORIGINS': f' HTTP://Example.COM:8080 ,{ORIGIN},,{ORIGIN}'}
    assert Config.from_env(env).cors_origins == ('http://example.com:8080', ORIGIN)
    assert Config.from_env({}).cors_origins == ()


@pytest.mark.parametrize(
    'bad', ['example.com', 'http://example.com/', 'http://x/path', 'ftp://x', '*']
)
def test_cors_origin_that_is_not_an_origin_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r'CORS_ORIGINS: .* is not an origin'):
        Config.from_env({'WSGI_STORE_CORS_ORIGINS': bad})


def test_cors_origin_flag_is_repeatable_and_kept_in_the_unit_flags() -> None:
    args = build_parser().parse_args(
        ['run', '--cors-origin', ORIGIN, '--cors-origin', OTHER]
    )
    config = config_from(args, Config())
    assert config.cors_origins == (ORIGIN, OTHER)
    flags = given_flags(args, config)
    assert flags == ['--cors-origin', ORIGIN, '--cors-origin', OTHER]


# -- preflights -------------------------------------------------------------------
@pytest.mark.parametrize(
    'path', ['/uploads', '/uploads/' + 'A' * 32, f'/files/{H}', '/', '/files']
)
def test_preflight_from_an_allowed_origin_is_answered_on_upload_and_object_routes(
    cors_app: webtest.TestApp, path: str
) -> None:
    resp = cors_app.options(path, headers=preflight(ORIGIN), status=204)
    assert resp.headers['Access-Control-Allow-Origin'] == ORIGIN
    allow_headers = resp.headers['Access-Control-Allow-Headers'].lower()
    for name in ('authorization', 'tus-resumable', 'upload-offset', 'upload-length'):
        assert name in allow_headers
    assert 'OPTIONS' in resp.headers['Access-Control-Allow-Methods']
    assert 'Origin' in resp.headers['Vary']


def test_preflight_allows_and_exposes_the_ietf_draft_headers(
    cors_app: webtest.TestApp,
) -> None:
    resp = cors_app.options('/uploads', headers=preflight(ORIGIN, 'POST'), status=204)
    allowed = resp.headers['Access-Control-Allow-Headers'].lower()
    for name in (
        'upload-complete',
        'upload-draft-interop-version',
        'upload-incomplete',
    ):
        assert name in allowed
    created = cors_app.post(
        '/uploads', headers={**TUS, 'Origin': ORIGIN, 'Upload-Length': '1'}, status=201
    )
    exposed = created.headers['Access-Control-Expose-Headers'].lower()
    for name in ('upload-complete', 'upload-limit', 'upload-draft-interop-version'):
        assert name in exposed


def test_preflight_lists_the_route_methods(cors_app: webtest.TestApp) -> None:
    resp = cors_app.options(
        '/uploads/' + 'A' * 32, headers=preflight(ORIGIN), status=204
    )
    assert resp.headers['Access-Control-Allow-Methods'] == (
        'HEAD, PATCH, DELETE, OPTIONS'
    )


def test_preflight_from_another_origin_gets_no_cors_headers(
    cors_app: webtest.TestApp,
) -> None:
    resp = cors_app.options(f'/files/{H}', headers=preflight(OTHER), status=405)
    assert 'Access-Control-Allow-Origin' not in resp.headers
    tus = cors_app.options('/uploads', headers=preflight(OTHER), status=204)
    assert 'Access-Control-Allow-Origin' not in tus.headers
    assert tus.headers['Tus-Version'] == '1.0.0'  # the plain tus discovery


def test_without_cors_origins_options_keeps_its_answers(app: webtest.TestApp) -> None:
    resp = app.options(f'/files/{H}', headers=preflight(ORIGIN), status=405)
    assert 'Access-Control-Allow-Origin' not in resp.headers
    assert 'Vary' not in resp.headers
    tus = app.options('/uploads', headers=preflight(ORIGIN), status=204)
    assert 'Access-Control-Allow-Origin' not in tus.headers
    assert tus.headers['Tus-Extension']


def test_cors_on_other_routes_is_off(cors_app: webtest.TestApp) -> None:
    resp = cors_app.options('/healthz', headers=preflight(ORIGIN), status=405)
    assert 'Access-Control-Allow-Origin' not in resp.headers
    resp = cors_app.get('/healthz', headers={'Origin': ORIGIN})
    assert 'Access-Control-Allow-Origin' not in resp.headers


def test_plain_options_with_an_allowed_origin_is_still_tus_discovery(
    cors_app: webtest.TestApp,
) -> None:
    resp = cors_app.options('/uploads', headers={'Origin': ORIGIN}, status=204)
    assert resp.headers['Tus-Version'] == '1.0.0'


def test_preflight_needs_no_token_even_when_the_store_has_tokens(
    make_app: Callable[..., webtest.TestApp], tmp_path: Path
) -> None:
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{WRITER} write\n')
    tokens.chmod(0o600)
    app = make_app(cors_origins=(ORIGIN,), tokens_file=tokens)
    resp = app.options(f'/files/{H}', headers=preflight(ORIGIN, 'GET'), status=204)
    assert resp.headers['Access-Control-Allow-Origin'] == ORIGIN
    # the real request without a token: a 401 the script can read
    denied = app.post(
        '/uploads', headers={**TUS, 'Origin': ORIGIN, 'Upload-Length': '3'}, status=401
    )
    assert denied.headers['Access-Control-Allow-Origin'] == ORIGIN


# -- actual requests ----------------------------------------------------------------
def test_tus_answers_to_an_allowed_origin_expose_location_offset_and_hash(
    cors_app: webtest.TestApp,
) -> None:
    origin = {'Origin': ORIGIN}
    created = cors_app.post(
        '/uploads',
        headers={**TUS, **origin, 'Upload-Length': str(len(DATA))},
        status=201,
    )
    assert created.headers['Access-Control-Allow-Origin'] == ORIGIN
    exposed = {
        h.strip().lower()
        for h in created.headers['Access-Control-Expose-Headers'].split(',')
    }
    for name in (
        'location',
        'upload-offset',
        'upload-length',
        'tus-resumable',
        'tus-version',
        'content-location',
        'upload-file-hash',
    ):
        assert name in exposed
    done = cors_app.patch(
        created.headers['Location'],
        DATA,
        headers={
            **TUS,
            **origin,
            'Upload-Offset': '0',
            'Content-Type': 'application/offset+octet-stream',
        },
        status=204,
    )
    assert done.headers['Access-Control-Allow-Origin'] == ORIGIN
    assert done.headers['Upload-File-Hash'] == H
    other = cors_app.get(f'/files/{H}', headers={'Origin': OTHER})
    assert 'Access-Control-Allow-Origin' not in other.headers
    assert 'Origin' in other.headers['Vary']


# -- the upload page ------------------------------------------------------------------
def test_browser_gets_the_upload_page_with_a_strict_csp(app: webtest.TestApp) -> None:
    resp = app.get('/', headers={'Accept': BROWSER})
    assert resp.content_type == 'text/html'
    assert resp.headers['Vary'] == 'Accept'
    csp = resp.headers['Content-Security-Policy']
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert 'unsafe-inline' not in csp
    assert '<input type="file" id="files" multiple>' in resp.text
    assert 'data-uploads="/uploads"' in resp.text
    # no inline script or style, nothing from another site
    assert not re.search(r'<script(?![^>]*\bsrc=)', resp.text)
    assert '<style' not in resp.text and ' style=' not in resp.text
    assert not re.search(r'(src|href)="(https?:)?//', resp.text)
    scripts = re.findall(r'src="([^"]+)"', resp.text)
    assert scripts and all(s.startswith('/static/upload.js?v=') for s in scripts)


def test_upload_page_loads_without_a_token(
    make_app: Callable[..., webtest.TestApp], tmp_path: Path
) -> None:
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{WRITER} write\n')
    tokens.chmod(0o600)
    app = make_app(tokens_file=tokens)
    page = app.get('/', headers={'Accept': BROWSER})
    assert 'upload.js' in page.text
    app.get(page.html.find('script')['src'])
    app.get(f'/?file_hash={H}', headers={'Accept': BROWSER}, status=401)
    app.get('/files', status=401)


@pytest.mark.parametrize(
    ('name', 'content_type'),
    [('upload.js', 'text/javascript'), ('upload.css', 'text/css')],
)
def test_static_assets_have_type_long_cache_and_etag(
    app: webtest.TestApp, name: str, content_type: str
) -> None:
    resp = app.get(f'/static/{name}')
    assert resp.content_type == content_type
    assert 'max-age=31536000' in resp.headers['Cache-Control']
    etag = resp.headers['ETag']
    assert resp.body
    again = app.get(f'/static/{name}', headers={'If-None-Match': etag}, status=304)
    assert again.body == b''
    assert app.head(f'/static/{name}').headers['ETag'] == etag


@pytest.mark.parametrize(
    'name', ['upload.html', 'missing.js', '..%2Fconfig.py', '%2e%2e', 'openapi.json']
)
def test_static_serves_only_its_allow_list(app: webtest.TestApp, name: str) -> None:
    resp = app.get(f'/static/{name}', status=404)
    assert resp.content_type == 'application/problem+json'


def test_static_refuses_writes(app: webtest.TestApp) -> None:
    app.put('/static/upload.js', b'x', status=405)


def test_page_has_an_etag_and_answers_304_when_unchanged(app: webtest.TestApp) -> None:
    page = app.get('/', headers={'Accept': BROWSER})
    assert page.headers['Cache-Control'] == 'no-cache'
    again = app.get(
        '/',
        headers={'Accept': BROWSER, 'If-None-Match': page.headers['ETag']},
        status=304,
    )
    assert again.body == b''


def test_page_links_assets_by_their_current_tag(app: webtest.TestApp) -> None:
    page = app.get('/', headers={'Accept': BROWSER}).text
    js = app.get('/static/upload.js')
    tag = js.headers['ETag'].strip('"')
    assert f'/static/upload.js?v={tag}' in page


def test_create_app_without_cors_adds_no_cors_middleware(store_dir: Path) -> None:
    app = create_app(Config(store_dir=store_dir))
    names = [type(m).__name__ for m in app._unprepared_middleware]
    assert 'Cors' not in names


# -- httplint (the library behind REDbot) over the page's answers ---------------------
@pytest.mark.parametrize(
    ('method', 'target', 'headers'),
    [
        ('GET', '/', {'Accept': BROWSER}),
        ('GET', '/static/upload.js', {}),
        ('GET', '/static/upload.css', {}),
        ('HEAD', '/static/upload.js', {}),
        ('OPTIONS', '/uploads', preflight(ORIGIN)),
        ('OPTIONS', f'/files/{H}', preflight(ORIGIN, 'GET')),
    ],
)
def test_httplint_finds_nothing_bad_in_the_page_assets_and_preflights(
    cors_app: webtest.TestApp, method: str, target: str, headers: dict[str, str]
) -> None:
    from httplint import HttpRequestLinter, HttpResponseLinter
    from httplint.note import levels

    resp = cors_app.request(target, method=method, headers=headers)
    request = HttpRequestLinter()
    request.process_request_topline(method.encode(), target.encode(), b'HTTP/1.1')
    request.process_headers(
        [(b'Host', b'127.0.0.1')]
        + [(k.encode(), v.encode()) for k, v in headers.items()]
    )
    request.finish_content(True)
    response = HttpResponseLinter(_related=request)
    response.is_head_response = method == 'HEAD'
    response.process_response_topline(b'HTTP/1.1', str(resp.status_int).encode(), b'')
    response.process_headers(
        [(k.encode('latin-1'), v.encode('latin-1')) for k, v in resp.headerlist]
    )
    response.feed_content(resp.body)
    response.finish_content(True)
    notes, todo = [], list(response.notes)
    while todo:
        note = todo.pop()
        notes.append(note)
        todo.extend(note.subnotes)
    found = [
        f'{type(n).__name__}: {n.summary}'
        for n in notes
        if n.level in (levels.BAD, levels.WARN)
        and type(n).__name__ != 'DATE_CLOCKLESS'  # WebTest: gunicorn adds Date
    ]
    assert found == []
