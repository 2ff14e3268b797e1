"""The three ways a read is answered, started for real over one store.

* ``app``: gunicorn alone (no X-Accel-Redirect);
* ``accel``: nginx from ``filestorectl nginx-config --accel-redirect /_store
  --no-direct-reads`` in front of a second gunicorn that answers with
  X-Accel-Redirect;
* ``direct``: nginx from ``filestorectl nginx-config --accel-redirect /_store``
  (direct reads on) in front of that same gunicorn.

Used by test_parity.py and test_httplint.py.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.servers import Server, filestorectl, free_port, start_gunicorn, start_nginx
from tests.test_nginx import share_store_with

KiB, MiB = 1024, 1024 * 1024
PATHS = ('app', 'accel', 'direct')


@dataclass
class Answer:
    """One raw HTTP answer: status, every header (repeats kept), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


@dataclass
class ThreePaths:
    store: Path
    ports: dict[str, int]
    objects: dict[str, bytes] = field(default_factory=dict)  # hash -> bytes
    sites: dict[str, Server] = field(default_factory=dict)  # accel, direct
    servers: list[Server] = field(default_factory=list)

    def request(
        self, path: str, target: str, method: str = 'GET', headers=None, body=None
    ) -> Answer:
        """Send one request over a fresh connection, exactly as given."""
        conn = http.client.HTTPConnection('127.0.0.1', self.ports[path], timeout=60)
        try:
            conn.request(method, target, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return Answer(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()

    def access_log(self, path: str) -> str:
        """The site's access log (``wsgi_store`` format: upstream= and accel=)."""
        port = self.sites[path].port
        return (
            self.sites[path].extra['prefix'].parent / f'site-{port}.log'
        ).read_text()

    def error_log(self, path: str) -> str:
        return (self.sites[path].extra['prefix'] / 'error.log').read_text()

    def upload(self, data: bytes) -> str:
        url = f'http://127.0.0.1:{self.ports["app"]}/'
        resp = requests.post(url, data=data, timeout=60)
        assert resp.status_code == 200, resp.text
        digest = resp.text.strip()
        assert digest == hashlib.sha256(data).hexdigest()
        self.objects[digest] = data
        return digest


def _site(paths: ThreePaths, work: Path, gunicorn: Server, *extra: str) -> Server:
    port = free_port()
    generated = filestorectl(
        'nginx-config',
        '--store', str(paths.store),
        '--host', '127.0.0.1',
        '--port', str(gunicorn.port),
        '--accel-redirect', '/_store',
        '--listen-port', f'127.0.0.1:{port}',
        '--access-log', str(work / f'site-{port}.log'),
        *extra,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    return start_nginx(work, generated.stdout, port)


@contextmanager
def three_paths() -> Iterator[ThreePaths]:
    """Start the three paths; upload the 0 B, 1 KiB and 1 MiB objects."""
    # Not under pytest's tmp dir (mode 0700): nginx's workers must reach the store.
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-paths-'))
    work.chmod(0o755)
    store = work / 'store'
    paths = ThreePaths(store, {})
    try:
        app = start_gunicorn(work, store)
        paths.servers.append(app)
        offload = start_gunicorn(work, store, accel_redirect='/_store')
        paths.servers.append(offload)
        for data in (b'', os.urandom(KiB), os.urandom(MiB)):
            paths.ports['app'] = app.port
            paths.upload(data)
        accel = _site(paths, work, offload, '--no-direct-reads')
        paths.servers.append(accel)
        direct = _site(paths, work, offload)
        paths.servers.append(direct)
        share_store_with(direct, store)
        paths.ports.update(accel=accel.port, direct=direct.port)
        paths.sites.update(accel=accel, direct=direct)
        yield paths
    finally:
        for server in reversed(paths.servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
