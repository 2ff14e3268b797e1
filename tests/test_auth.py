"""Bearer tokens: the tokens file, 401/403, scopes, public reads, reloads, logs."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import webtest

from tests.conftest import sha256
from tests.servers import start_gunicorn
from wsgi_store.app import create_app
from wsgi_store.config import Config
from wsgi_store.http import auth, tokens
from wsgi_store.http.auth import (
    TokenAuth,
    TokensFileError,
    parse_tokens,
)
from wsgi_store.ops.netwarn import network_warning

DATA = b'guarded bytes\n'
H = sha256(DATA)
READER = 'reader-token-0000000000000001'
WRITER = 'writer-token-0000000000000002'
DELETER = 'deleter-token-000000000000003'
ADMIN = 'admin+token/0000000000000004=='
METRICS = 'metrics-token-00000000000005'
ALL_TOKENS = (READER, WRITER, DELETER, ADMIN, METRICS)
TOKENS_TEXT = f"""\
# who      scopes
{READER}   read
{WRITER}   write      # a trailing comment
{DELETER}  delete
{ADMIN}    read, write,delete
{METRICS}  metrics
"""


def bearer(token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}'}


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / 'tokens'
    path.write_text(TOKENS_TEXT)
    path.chmod(0o600)
    return path


@pytest.fixture
def make_auth_app(store_dir: Path, tokens_file: Path) -> Callable[..., webtest.TestApp]:
    def factory(**settings: object) -> webtest.TestApp:
        config = Config(store_dir=store_dir, tokens_file=tokens_file).replace(
            **settings
        )
        return webtest.TestApp(
            create_app(config), extra_environ={'wsgi.input_terminated': True}
        )

    return factory


@pytest.fixture
def app(make_auth_app) -> webtest.TestApp:
    app = make_auth_app()
    app.post('/', DATA, headers=bearer(WRITER))
    return app


# -- no token / bad token -> 401 -------------------------------------------------------
@pytest.mark.parametrize(
    ('method', 'url'),
    [
        ('GET', f'/files/{H}'),
        ('HEAD', f'/files/{H}'),
        ('GET', f'/?file_hash={H}'),
        ('POST', '/'),
        ('POST', '/files'),
        ('PUT', f'/files/{H}'),
        ('DELETE', f'/files/{H}'),
        ('DELETE', f'/?file_hash={H}'),
    ],
)
def test_no_token_is_401_with_challenge(app, store_dir, method, url) -> None:
    resp = app.request(url, method=method, body=DATA, status=401)
    assert resp.headers['WWW-Authenticate'] == 'Bearer realm="wsgi-store"'
    if method != 'HEAD':
        assert resp.json['type'].endswith('/unauthorized')
    assert (store_dir / H[:2] / H).read_bytes() == DATA  # nothing deleted


@pytest.mark.parametrize(
    'header',
    ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer   ', 'bearer', 'Token ' + ADMIN, ''],
)
def test_no_bearer_credentials_is_401_without_error_code(app, header) -> None:
    resp = app.get(f'/files/{H}', headers={'Authorization': header}, status=401)
    assert resp.headers['WWW-Authenticate'] == 'Bearer realm="wsgi-store"'


@pytest.mark.parametrize(
    'token',
    [
        'unknown-token-00000000000000000',
        READER + 'x',
        READER[:-1],
        'a',
        'has space ' + READER,
        'bad"quote' + READER,
    ],
)
def test_unknown_or_malformed_token_is_401_invalid_token(app, token) -> None:
    resp = app.get(f'/files/{H}', headers=bearer(token), status=401)
    assert resp.headers['WWW-Authenticate'] == (
        'Bearer realm="wsgi-store", error="invalid_token"'
    )
    assert len(token) < 8 or token not in resp.text


def test_unknown_route_is_404_without_token(app) -> None:
    """Falcon answers 404 before any middleware sees a resource: nothing leaks."""
    app.get('/no/such/route', status=404)


def test_scheme_is_case_insensitive(app) -> None:
    resp = app.get(f'/files/{H}', headers={'Authorization': f'bEaReR {READER}'})
    assert resp.body == DATA


# -- scopes -> 403 ---------------------------------------------------------------------
SCOPE_CASES = [
    # token, method, url, expected status
    (READER, 'GET', f'/files/{H}', 200),
    (READER, 'HEAD', f'/files/{H}', 200),
    (READER, 'GET', f'/?file_hash={H}', 200),
    (READER, 'POST', '/', 403),
    (READER, 'PUT', f'/files/{H}', 403),
    (READER, 'DELETE', f'/files/{H}', 403),
    (WRITER, 'GET', f'/files/{H}', 403),
    (WRITER, 'POST', '/files', 200),
    (WRITER, 'PUT', f'/files/{H}', 200),
    (WRITER, 'DELETE', f'/?file_hash={H}', 403),
    (DELETER, 'GET', f'/files/{H}', 403),
    (DELETER, 'POST', '/', 403),
    (DELETER, 'DELETE', f'/files/{H}', 200),
    (METRICS, 'GET', f'/files/{H}', 403),
    (METRICS, 'POST', '/', 403),
    (ADMIN, 'GET', f'/files/{H}', 200),
    (ADMIN, 'POST', '/', 200),
    (ADMIN, 'DELETE', f'/?file_hash={H}', 200),
]


@pytest.mark.parametrize(('token', 'method', 'url', 'status'), SCOPE_CASES)
def test_scopes(app, store_dir, token, method, url, status) -> None:
    resp = app.request(
        url, method=method, body=DATA, headers=bearer(token), status=status
    )
    stored = (store_dir / H[:2] / H).exists()
    assert stored is not (method == 'DELETE' and status == 200)
    if status == 403:
        scope = {'GET': 'read', 'HEAD': 'read', 'POST': 'write', 'PUT': 'write'}.get(
            method, 'delete'
        )
        assert resp.headers['WWW-Authenticate'] == (
            f'Bearer realm="wsgi-store", error="insufficient_scope", scope="{scope}"'
        )
        assert resp.json['type'].endswith('/forbidden')
    if status == 200 and method == 'GET':
        assert resp.body == DATA


def test_public_read(make_auth_app) -> None:
    app = make_auth_app(public_read=True)
    app.post('/', DATA, headers=bearer(WRITER))
    assert app.get(f'/files/{H}').body == DATA
    assert app.head(f'/?file_hash={H}').status_int == 200
    app.get('/files/' + 'a' * 64, status=404)  # public, so a plain 404
    app.post('/', b'anonymous write', status=401)
    app.delete(f'/files/{H}', status=401)
    app.delete(f'/files/{H}', headers=bearer(READER), status=403)


def test_listing_always_needs_read(make_auth_app) -> None:
    """A listing would hand out every hash (the links of a public store)."""
    for public in (False, True):
        app = make_auth_app(public_read=public)
        app.post('/', DATA, headers=bearer(WRITER))
        app.get('/files', status=401)
        app.get('/files', headers=bearer(WRITER), status=403)
        assert H in app.get('/files', headers=bearer(READER)).json['hashes']


def test_missing_lookup_is_a_read(make_auth_app) -> None:
    app = make_auth_app()
    app.post('/', DATA, headers=bearer(WRITER))
    other = 'b' * 64
    app.post_json('/files/missing', [H, other], status=401)
    app.post_json('/files/missing', [H, other], headers=bearer(WRITER), status=403)
    resp = app.post_json('/files/missing', [H, other], headers=bearer(READER))
    assert resp.json == {'missing': [other]}
    public = make_auth_app(public_read=True)
    assert public.post_json('/files/missing', [other]).json == {'missing': [other]}


@pytest.mark.parametrize('path', ['/healthz', '/readyz'])
def test_health_routes_never_need_a_token(app, path) -> None:
    assert app.get(path).status_int == 200
    assert app.get(path, headers=bearer('garbage-token-00000000000')).status_int == 200


def test_metrics_needs_the_metrics_scope(app) -> None:
    for token in (READER, WRITER, DELETER, ADMIN):
        app.get('/metrics', headers=bearer(token), status=403)
    app.get('/metrics', status=401)
    resp = app.get('/metrics', headers=bearer(METRICS), status=200)
    assert resp.content_type.startswith('text/plain')
    assert '# TYPE ' in resp.text  # the exposition, not an error document


def test_every_route_has_a_declared_need(app) -> None:
    """A route added without an entry in ROUTE_NEEDS fails here (not at review)."""
    router = app.app._router
    templates = {route.uri_template for route in _routes(router._roots)}
    assert templates and templates <= set(auth.ROUTE_NEEDS)


def _routes(nodes: list) -> list:
    found = []
    for node in nodes:
        if node.resource is not None:
            found.append(node)
        found.extend(_routes(node.children))
    return found


@pytest.mark.parametrize('method', ['OPTIONS', 'PATCH'])
def test_other_methods_reach_405_without_token(app, method) -> None:
    app.request(f'/files/{H}', method=method, status=405)


def test_no_tokens_file_means_no_auth(make_app) -> None:
    app = make_app()
    assert app.post('/', DATA).text == H + '\n'
    assert app.delete(f'/files/{H}').status_int == 200


# -- constant time ---------------------------------------------------------------------
def test_every_token_is_compared_with_compare_digest(app, monkeypatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = tokens.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, 'compare_digest', spy)
    app.get(f'/files/{H}', headers=bearer(READER))  # READER is the first entry
    assert len(calls) == len(ALL_TOKENS)  # no early exit on the match
    assert {len(a) for a, _ in calls} == {32}  # fixed-length digests, not tokens
    calls.clear()
    app.get(f'/files/{H}', headers=bearer('x' * 40), status=401)
    assert len(calls) == len(ALL_TOKENS)


# -- the tokens file -------------------------------------------------------------------
@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('', 'has no tokens'),
        ('# only a comment\n\n', 'has no tokens'),
        (f'{READER}\n', 'line 1: no scopes'),
        (f'# c\n{READER} read\n{WRITER} wirte\n', 'line 3: unknown scope wirte'),
        (f'{READER} read admin\n', 'unknown scope admin'),
        ('short read\n', 'line 1: the token is shorter than 16'),
        (f'{READER}\u00e9 read\n', 'outside RFC 6750 b64token'),
        (f'{READER} read\n{READER} write\n', 'line 2: a token is listed twice'),
    ],
)
def test_malformed_tokens_file_is_a_clear_error(text, message) -> None:
    with pytest.raises(TokensFileError, match=message) as info:
        parse_tokens(text, 'tokens file T')
    assert READER not in str(info.value)


def test_malformed_tokens_file_stops_create_app(tmp_path, store_dir) -> None:
    path = tmp_path / 'tokens'
    path.write_text(f'{READER} raed\n')
    with pytest.raises(TokensFileError, match=f'tokens file {path} line 1'):
        create_app(Config(store_dir=store_dir, tokens_file=path))
    with pytest.raises(TokensFileError, match='does not exist'):
        create_app(Config(store_dir=store_dir, tokens_file=tmp_path / 'missing'))
    (tmp_path / 'empty').write_text('# nothing yet\n')
    with pytest.raises(TokensFileError, match='has no tokens'):
        create_app(Config(store_dir=store_dir, tokens_file=tmp_path / 'empty'))


def test_scopes_separated_by_commas_or_spaces() -> None:
    grants = parse_tokens(TOKENS_TEXT)
    assert [sorted(g.scopes) for g in grants] == [
        ['read'],
        ['write'],
        ['delete'],
        ['delete', 'read', 'write'],
        ['metrics'],
    ]
    assert all(READER.encode() not in repr(g).encode() for g in grants)


def test_world_readable_tokens_file_is_warned_about(tokens_file, caplog) -> None:
    tokens_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger='wsgi_store.http.tokens'):
        auth.load_tokens(tokens_file)
    assert 'readable by every local user' in caplog.text


# -- reloading ------------------------------------------------------------------------
def rewrite(path: Path, text: str) -> None:
    """Replace the file's content and make sure its identity (mtime) changes."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_tokens_file_change_is_picked_up(store_dir, tokens_file, caplog) -> None:
    config = Config(store_dir=store_dir, tokens_file=tokens_file)
    middleware = TokenAuth(config, check_interval=0)
    new = 'brand-new-token-0000000000006'
    grants = middleware.tokens.current()
    assert auth.find_grant(grants, READER) is not None
    rewrite(tokens_file, f'{new} read\n')
    grants = middleware.tokens.current()
    assert auth.find_grant(grants, new) is not None
    assert auth.find_grant(grants, READER) is None
    # A malformed edit is logged and the tokens in force stay.
    with caplog.at_level(logging.DEBUG):
        rewrite(tokens_file, f'{new} read\n{READER} nonsense\n')
        grants = middleware.tokens.current()
    assert auth.find_grant(grants, new) is not None
    assert 'line 2: unknown scope nonsense' in caplog.text
    assert 'previous tokens stay in force' in caplog.text
    assert READER not in caplog.text and new not in caplog.text


def test_reload_through_the_app(make_auth_app, tokens_file, monkeypatch) -> None:
    monkeypatch.setattr(auth, 'RELOAD_CHECK_SECONDS', 0.0)
    app = make_auth_app()
    app.post('/', DATA, headers=bearer(WRITER))
    rewrite(tokens_file, f'{DELETER} read\n')
    assert app.get(f'/files/{H}', headers=bearer(DELETER)).body == DATA
    app.get(f'/files/{H}', headers=bearer(READER), status=401)


# -- logs ------------------------------------------------------------------------
def test_tokens_never_reach_the_logs(app, tokens_file, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        for token in ALL_TOKENS:
            for method in ('GET', 'POST', 'DELETE'):
                app.request(
                    f'/files/{H}', method=method, headers=bearer(token), status='*'
                )
        app.get(f'/files/{H}', headers=bearer('wrong-token-00000000000000'), status=401)
        app.get(f'/files/{H}', headers=bearer('bad"token' + READER), status=401)
        tokens_file.write_text(f'{READER} bogus-scope\n')
        with pytest.raises(TokensFileError) as info:
            auth.load_tokens(tokens_file)
    assert READER not in str(info.value)
    assert caplog.records, 'expected some log records to check'
    for secret in (*ALL_TOKENS, 'wrong-token-00000000000000'):
        assert secret not in caplog.text


# -- network warning ------------------------------------------------------------------
@pytest.mark.parametrize(
    ('host', 'tokens', 'warns'),
    [
        ('127.0.0.1', False, False),
        ('127.0.0.2', False, False),
        ('::1', False, False),
        ('localhost', False, False),
        ('::ffff:127.0.0.1', False, False),
        ('0.0.0.0', False, True),
        ('::', False, True),
        ('', False, True),
        ('192.168.1.10', False, True),
        ('store.example.com', False, True),
        ('0.0.0.0', True, False),
    ],
)
def test_network_warning(tmp_path, host, tokens, warns) -> None:
    config = Config(
        host=host, port=9000, tokens_file=tmp_path / 't' if tokens else None
    )
    text = network_warning(config)
    if warns:
        assert text is not None
        assert 'anyone' in text and 'write and delete' in text
        assert f'{host}:9000' in text
    else:
        assert text is None


# -- real gunicorn: HUP re-reads the file, tokens stay out of its log ------------
@pytest.mark.e2e
def test_hup_reloads_tokens_on_real_gunicorn(tmp_path, tokens_file) -> None:
    server = start_gunicorn(
        tmp_path,
        tmp_path / 'store',
        workers=1,
        tokens_file=tokens_file,
        log_level='DEBUG',
    )
    try:
        url = f'{server.url}/files'
        assert requests.post(url, DATA, headers=bearer(WRITER), timeout=10).ok
        get = f'{server.url}/files/{H}'
        assert requests.get(get, timeout=10).status_code == 401
        assert requests.get(get, headers=bearer(READER), timeout=10).content == DATA
        new = 'after-hup-token-00000000007'
        tokens_file.write_text(f'{new} read\n')
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = requests.get(get, headers=bearer(new), timeout=10)
            if got.status_code == 200:
                break
            time.sleep(0.2)
        assert got.status_code == 200 and got.content == DATA
        assert requests.get(get, headers=bearer(READER), timeout=10).status_code == 401
    finally:
        server.stop()
    log = server.log.read_text()
    assert 'GET /files/' in log  # the access log was written
    for secret in (*ALL_TOKENS, new):
        assert secret not in log
