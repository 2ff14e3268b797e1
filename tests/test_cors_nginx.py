"""CORS on what nginx answers itself: direct public reads and X-Accel-Redirect.

One gunicorn with ``--cors-origin`` (and ``--accel-redirect``), two generated
sites in front (nginx serves public reads itself; ``--no-direct-reads``: the app
redirects every read to nginx). Each request's CORS headers through nginx must
be exactly the app's own answer's (straight to gunicorn), for an allowed
origin, another one, none, and an allowed one in other letter case.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.servers import (
    Server,
    filestorectl,
    free_port,
    require_binary,
    start_gunicorn,
    start_nginx,
)
from tests.test_nginx import share_store_with

pytestmark = pytest.mark.e2e
ALLOWED = 'http://a.example'
ORIGINS = (ALLOWED, 'https://b.example:8443')
CORS = ('Vary', 'Access-Control-Allow-Origin', 'Access-Control-Expose-Headers')
DATA = os.urandom(300_000)  # above any inline limit: the app redirects it
H = hashlib.sha256(DATA).hexdigest()
MISSING = hashlib.sha256(b'not stored').hexdigest()


@dataclass
class Stack:
    app: Server
    direct: Server
    accel: Server


@pytest.fixture(scope='module')
def stack() -> Iterator[Stack]:
    require_binary('nginx', '/usr/sbin/nginx')
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-cors-nginx-'))
    work.chmod(0o755)
    store = work / 'store'
    servers: list[Server] = []
    try:
        app = start_gunicorn(
            work, store, accel_redirect='/_store', cors_origins=','.join(ORIGINS)
        )
        servers.append(app)
        for extra in ((), ('--no-direct-reads',)):
            port = free_port()
            generated = filestorectl(
                'nginx-config',
                '--store', str(store),
                '--port', str(app.port),
                '--accel-redirect', '/_store',
                *(a for o in ORIGINS for a in ('--cors-origin', o)),
                '--listen-port', f'127.0.0.1:{port}',
                '--access-log', str(work / f'access-{port}.log'),
                *extra,
            )  # fmt: skip
            assert generated.returncode == 0, generated.stderr
            servers.append(start_nginx(work, generated.stdout, port))
        share_store_with(servers[1], store)
        resp = requests.post(app.url + '/files', data=DATA, timeout=30)
        assert resp.status_code == 200, resp.text
        yield Stack(*servers)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def cors_of(resp: requests.Response) -> dict[str, str | None]:
    return {name: resp.headers.get(name) for name in CORS}


REQUESTS = [
    ('GET', f'/files/{H}', {}),
    ('HEAD', f'/files/{H}', {}),
    ('GET', f'/?file_hash={H}', {}),
    ('GET', f'/files/{MISSING}', {}),
    ('GET', f'/files/{H}', {'If-Match': ''}),  # nginx's own 412 on the direct site
]
ORIGIN_CASES = [
    ALLOWED,
    'https://b.example:8443',
    'http://c.example',
    None,
    ALLOWED.upper(),
]


@pytest.mark.parametrize('origin', ORIGIN_CASES)
@pytest.mark.parametrize(('method', 'path', 'headers'), REQUESTS)
def test_nginx_answers_carry_the_apps_cors_headers(
    stack: Stack, method: str, path: str, headers: dict[str, str], origin: str | None
) -> None:
    sent = {**headers, **({'Origin': origin} if origin else {})}
    app = requests.request(method, stack.app.url + path, headers=sent, timeout=30)
    for site in (stack.direct, stack.accel):
        resp = requests.request(method, site.url + path, headers=sent, timeout=30)
        assert resp.status_code == app.status_code, (site.url, resp.text)
        assert cors_of(resp) == cors_of(app), site.url
    if origin == ALLOWED:
        assert app.headers['Access-Control-Allow-Origin'] == ALLOWED


def test_app_redirects_the_read_to_nginx(stack: Stack) -> None:
    """The accel site's answers above really are nginx's (X-Accel-Redirect)."""
    resp = requests.get(
        f'{stack.app.url}/files/{H}', headers={'Origin': ALLOWED}, timeout=30
    )
    assert resp.headers['X-Accel-Redirect'].startswith('/_store/')
    via = requests.get(
        f'{stack.accel.url}/files/{H}', headers={'Origin': ALLOWED}, timeout=30
    )
    assert via.content == DATA
