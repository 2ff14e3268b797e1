"""Scopes hold for every spelling of a route (issue 11 item 1).

Every protected route x every spelling a client or proxy may send x (no token,
each scope), sent verbatim (http.client, no normalisation) to the real daemon's
gunicorn and through the generated nginx site. Whatever resource a spelling
reaches, its scope applies: an answer is 400/401/403/404, or the real answer
when the token has the right scope; protected content never comes back without
it, and a refused write or delete changes nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import Daemon, require_binary, start_daemon
from tests.test_nginx import Site, share_store_with, start_site

pytestmark = pytest.mark.e2e

READER = 'reader-token-000000000000001'
WRITER = 'writer-token-000000000000002'
DELETER = 'deleter-token-00000000000003'
METRICS = 'metrics-token-00000000000004'
TOKENS = {'read': READER, 'write': WRITER, 'delete': DELETER, 'metrics': METRICS}
DATA = b'the object every spelling asks for\n'
H = hashlib.sha256(DATA).hexdigest()
# 405: a spelling routed to a resource without that method (POST /files/missing;p
# reaches /files/{file_hash}): the router's answer, the same for every caller.
REFUSED = {400, 401, 403, 404, 405}


def spellings(path: str) -> list[str]:
    """``path`` as clients and proxies may spell it (the path part only)."""
    rest = path[1:]
    found = [
        path,
        '/' + path,  # //x
        '/.' + path,  # /./x
        path + '/',  # /x/
        '/%2F' + rest,  # /%2Fx
        '/%2f' + rest,  # /%2fx
        path + ';p',  # /x;p
        '/a/..' + path,  # /a/../x
        path.upper(),
        path + '?',  # a trailing, empty query
    ]
    if '/' in rest:  # an inner slash encoded: /files%2Fmissing
        found += ['/' + rest.replace('/', '%2F'), '/' + rest.replace('/', '%2f')]
    return found


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # spelled by spellings(); the query (if any) is appended
    query: str
    scope: str  # the scope this route needs
    body: bytes | None = None  # None: DATA for PUT, fresh random bytes for POST
    headers: tuple[tuple[str, str], ...] = ()

    def target(self, spelling: str) -> str:
        if not self.query:
            return spelling
        return spelling + ('&' if spelling.endswith('?') else '?') + self.query


TUS_CREATE = (('Tus-Resumable', '1.0.0'), ('Upload-Length', '5'))

# Routes that need a scope with --public-read, and those that need one without.
PUBLIC_CASES = [
    Case('GET', '/files', '', 'read'),  # the listing: never public
    Case('GET', '/metrics', '', 'metrics'),
    Case('POST', '/', '', 'write'),
    Case('POST', '/files', '', 'write'),
    Case('PUT', f'/files/{H}', '', 'write'),
    Case('DELETE', f'/files/{H}', '', 'delete'),
    Case('DELETE', '/', f'file_hash={H}', 'delete'),
    Case('PUT', '/photo.jpg', '', 'write'),  # curl -T photo.jpg http://host/
    Case('POST', '/uploads', '', 'write', b'', TUS_CREATE),  # tus creation
]
PRIVATE_CASES = [
    Case('GET', f'/files/{H}', '', 'read'),
    Case('GET', '/', f'file_hash={H}', 'read'),
    Case('POST', '/files/missing', '', 'read', f'["{H}"]'.encode()),
    Case('GET', '/openapi.json', '', 'read'),
]


def send(
    base: str,
    method: str,
    target: str,
    token: str | None,
    body: bytes,
    extra: tuple[tuple[str, str], ...] = (),
) -> tuple[int, bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        headers = dict(extra)
        if body or method in ('POST', 'PUT'):
            headers['Content-Length'] = str(len(body))
        if token:
            headers['Authorization'] = f'Bearer {token}'
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def is_protected_content(case: Case, body: bytes) -> bool:
    if case.path == '/metrics':
        return b'# TYPE' in body
    if case.method in ('GET', 'HEAD') and case.path == '/files':
        return H.encode() in body
    if case.path == '/files/missing':
        return b'"missing"' in body
    if case.path == '/openapi.json':
        return b'"openapi"' in body
    return body == DATA


def stored(store: Path) -> bool:
    return (store / H[:2] / H).exists()


def write_body(case: Case) -> bytes:
    if case.body is not None:
        return case.body
    return DATA if case.method == 'PUT' else os.urandom(32)


def check_case(base: str, store: Path, case: Case, spelling: str) -> None:
    """One route spelling against every token; fails with what was answered."""
    target = case.target(spelling)
    answers: dict[str | None, int] = {}
    for scope in (None, *TOKENS):
        token = TOKENS.get(scope) if scope else None
        body = write_body(case)
        if case.method in ('PUT',):
            (store / H[:2] / H).unlink(missing_ok=True)
        status, got = send(base, case.method, target, token, body, case.headers)
        answers[scope] = status
        where = f'{case.method} {target} with {scope or "no"} token: {status}'
        if scope == case.scope:
            assert status in REFUSED | {200, 201}, where
            if status == 200 and case.method == 'GET':
                assert is_protected_content(case, got), where
        else:
            assert status in REFUSED, where
            assert not is_protected_content(case, got), where
            if case.method == 'DELETE' or case.method == 'PUT':
                assert stored(store) is (case.method == 'DELETE'), where
            if case.method == 'POST' and case.body is None:
                new = hashlib.sha256(body).hexdigest()
                assert not (store / new[:2] / new).exists(), where
        restore(base, store)
    if spelling == case.path:  # the canonical spelling: the matrix is not vacuous
        assert answers[case.scope] in (200, 201), (target, answers)
    if answers[case.scope] in (200, 201):
        # The spelling reached the resource: everyone else got its 401/403.
        assert answers[None] == 401, (target, answers)
        others = {s: a for s, a in answers.items() if s not in (None, case.scope)}
        assert set(others.values()) == {403}, (target, answers)


def restore(base: str, store: Path) -> None:
    if not stored(store):
        status, _ = send(base, 'PUT', f'/files/{H}', WRITER, DATA)
        assert status in (200, 201)


@dataclass
class Target:
    daemon: Daemon
    site: Site


def start_target(work: Path, tokens: Path, *flags: str) -> Target:
    daemon = start_daemon(
        work / f'svc{len(flags)}', '--tokens', str(tokens), '--accel-redirect',
        '/_store', *flags,
    )  # fmt: skip
    try:
        site = start_site(daemon, work, '--tokens', str(tokens), *flags)
    except BaseException:
        daemon.cleanup()  # the fixture only stops what it was handed
        raise
    try:
        share_store_with(site.nginx, daemon.store)
    except BaseException:
        site.nginx.stop()
        daemon.cleanup()
        raise
    return Target(daemon, site)


@pytest.fixture(scope='module')
def targets() -> Iterator[dict[str, Target]]:
    require_binary('nginx', '/usr/sbin/nginx')
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-spellings-'))
    work.chmod(0o755)
    tokens = work / 'tokens'
    tokens.write_text(''.join(f'{t} {s}\n' for s, t in TOKENS.items()))
    tokens.chmod(0o600)
    started: dict[str, Target] = {}
    try:
        started['public'] = start_target(work, tokens, '--public-read')
        started['private'] = start_target(work, tokens)
        for target in started.values():
            restore(target.daemon.url, target.daemon.store)
        yield started
    finally:
        for target in started.values():
            target.site.nginx.stop()
            target.daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize('via', ['gunicorn', 'nginx'])
@pytest.mark.parametrize(
    ('mode', 'case'),
    [
        (mode, case)
        for mode, cases in (('public', PUBLIC_CASES), ('private', PRIVATE_CASES))
        for case in cases
    ],
    ids=lambda v: v if isinstance(v, str) else f'{v.method}{v.path[:14]}?{v.query[:5]}',
)
def test_no_spelling_skips_the_route_scope(targets, via, mode, case) -> None:
    target = targets[mode]
    base = target.daemon.url if via == 'gunicorn' else target.site.url
    for spelling in spellings(case.path):
        check_case(base, target.daemon.store, case, spelling)
