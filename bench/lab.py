"""The services under test, on loopback, in one work directory.

nginx (store site, static files, WebDAV) lives for the whole run; the gunicorn
instances are started afresh for every round, because gunicorn hands each
connection to one worker for its life and a single start can be lopsided.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

from . import nginxconf, s3load, seed
from .procs import Child, Children, free_port

REPO = Path(__file__).resolve().parent.parent
NGINX = shutil.which('nginx') or '/usr/sbin/nginx'

# name -> (store directory under the work dir or None for the cache, fsync, app)
GUNICORNS: dict[str, tuple[str, bool, str | None]] = {
    'store': ('store', True, None),
    'store-nofsync': ('store-nofsync', False, None),
    'trivial': ('trivial-store', True, 'bench.trivial_app:app'),
    'empty': ('empty', True, None),
    'big': ('', True, None),
}
S3_STORE = 'store-s3'  # the store on the S3 backend, started when S3 is configured


def gunicorn_argv() -> list[str]:
    """The venv's gunicorn with the service's own config file."""
    exe = REPO / '.venv' / 'bin' / 'gunicorn'
    base = [str(exe)] if exe.exists() else [sys.executable, '-m', 'gunicorn']
    return [*base, '-c', str(REPO / 'gunicorn.conf.py')]


@dataclasses.dataclass
class Lab:
    """Ports, directories and children of one bench run."""

    work: Path
    big_store: Path
    workers: int = 2
    threads: int = 8
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    children: Children = dataclasses.field(default_factory=Children)
    gunicorns: dict[str, Child] = dataclasses.field(default_factory=dict)
    s3: s3load.Target | None = None  # set: a store on the S3 backend runs too

    def __post_init__(self) -> None:
        for name in [*GUNICORNS, S3_STORE, 'site', 'static', 'dav']:
            self.ports[name] = free_port()
        (self.work / S3_STORE).mkdir(exist_ok=True)
        for folder, _, _ in GUNICORNS.values():
            if folder:
                seed.make_shards(self.work / folder)
        self.dav_root.mkdir(parents=True, exist_ok=True)
        (self.dav_root / 'dav-tmp').mkdir(exist_ok=True)

    def store_dir(self, name: str) -> Path:
        if name == S3_STORE:  # its local directory only (objects live in S3)
            return self.work / S3_STORE
        folder = GUNICORNS[name][0]
        return self.work / folder if folder else self.big_store

    @property
    def dav_root(self) -> Path:
        return self.work / 'davroot'

    def url(self, name: str, path: str = '/') -> str:
        return f'http://127.0.0.1:{self.ports[name]}{path}'

    def start_nginx(self) -> None:
        prefix = self.work / 'nginx'
        prefix.mkdir(exist_ok=True)
        site = nginxconf.store_site(
            self.ports['site'], self.ports['store'], self.store_dir('store'), prefix
        )
        conf = nginxconf.main_conf(
            prefix,
            [
                site,
                nginxconf.static_site(self.ports['static'], self.store_dir('store')),
                nginxconf.dav_site(self.ports['dav'], self.dav_root),
            ],
        )
        (prefix / 'nginx.conf').write_text(conf)
        child = self.children.add(
            Child(
                'nginx',
                [
                    NGINX,
                    '-p',
                    str(prefix),
                    '-c',
                    str(prefix / 'nginx.conf'),
                    '-e',
                    str(prefix / 'error.log'),
                    '-g',
                    'daemon off;',
                ],
                prefix / 'stdout.log',
            )
        )
        child.wait_http(self.ports['static'], '/static/')

    def start_gunicorns(self, round_no: int) -> None:
        """Start every gunicorn instance (fresh processes) and wait for them."""
        instances = dict(GUNICORNS)
        if self.s3 is not None:
            instances[S3_STORE] = (S3_STORE, True, None)
        for name, (_, fsync, app) in instances.items():
            env = dict(
                os.environ,
                WSGI_STORE_STORE_DIR=str(self.store_dir(name)),
                WSGI_STORE_HOST='127.0.0.1',
                WSGI_STORE_PORT=str(self.ports[name]),
                WSGI_STORE_FSYNC='1' if fsync else '0',
                WSGI_STORE_WORKERS=str(self.workers),
                WSGI_STORE_THREADS=str(self.threads),
                WSGI_STORE_PIDFILE=str(self.work / f'{name}.pid'),
                PYTHONPATH=str(REPO),
            )
            if name == S3_STORE and self.s3 is not None:
                env.update(self.s3.store_env())
            argv = [*gunicorn_argv(), *([app] if app else [])]
            log = self.work / f'{name}-{round_no}.log'
            self.gunicorns[name] = Child(name, argv, log, env=env, cwd=REPO)
        for name, child in self.gunicorns.items():
            child.wait_http(self.ports[name], '/healthz', timeout=60.0)

    def stop_gunicorns(self) -> None:
        while self.gunicorns:
            self.gunicorns.popitem()[1].stop()

    def close(self) -> None:
        """Stop everything this lab started."""
        self.stop_gunicorns()
        self.children.stop_all()
