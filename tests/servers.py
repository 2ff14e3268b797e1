"""Real processes for end-to-end tests: gunicorn and nginx on free loopback ports.

Every wait is bounded; every process is stopped by its own handle (terminate,
then kill after a grace period), never by name.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def require_binary(name: str, *candidates: str) -> str:
    """Path of a program; skip the test locally, fail it under CI=true."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (
            candidate if os.access(candidate, os.X_OK) else None
        )
        if found:
            return found
    reason = f'{name} is not installed (CI installs it via .ci/run)'
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def wait_http(
    url: str,
    timeout: float = 30.0,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``url`` until it answers (any status) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text()[-3000:] if log and log.exists() else ''
            raise RuntimeError(f'process exited with {proc.returncode}:\n{text}')
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f'{url} did not answer within {timeout} s')


@dataclass
class Server:
    """A started process and where it listens."""

    proc: subprocess.Popen
    port: int
    log: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.proc, timeout)

    def worker_pids(self) -> list[int]:
        """PIDs of the direct children of the process (gunicorn's workers)."""
        path = Path(f'/proc/{self.proc.pid}/task/{self.proc.pid}/children')
        try:
            return [int(p) for p in path.read_text().split()]
        except FileNotFoundError:
            return []


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate a child we started; kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def store_env(store: Path, port: int, **settings: object) -> dict[str, str]:
    """The environment for a gunicorn run of the store (WSGI_STORE_* settings)."""
    env = dict(os.environ)
    env.update(
        {
            'WSGI_STORE_STORE_DIR': str(store),
            'WSGI_STORE_PORT': str(port),
            'WSGI_STORE_HOST': '127.0.0.1',
        }
    )
    env.update({f'WSGI_STORE_{k.upper()}': str(v) for k, v in settings.items()})
    return env


def start_gunicorn(
    workdir: Path,
    store: Path,
    *,
    port: int | None = None,
    timeout: float = 30.0,
    preexec_fn: Callable[[], None] | None = None,
    **settings: object,
) -> Server:
    """``gunicorn -c gunicorn.conf.py`` from the repository root on a free port
    (``preexec_fn`` runs in the child before gunicorn, e.g. to set a limit)."""
    port = port or free_port()
    log = workdir / f'gunicorn-{port}.log'
    with open(log, 'ab') as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / 'gunicorn'), '-c', str(ROOT / 'gunicorn.conf.py')],
            cwd=ROOT,
            env=store_env(store, port, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = Server(proc, port, log)
    try:
        wait_http(server.url + '/healthz', timeout, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


NGINX_MAIN = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
{body}
}}
"""


def start_nginx(
    workdir: Path, http_body: str, port: int, timeout: float = 15.0
) -> Server:
    """Run nginx in the foreground with ``http_body`` inside its ``http {}`` block."""
    nginx = require_binary('nginx', '/usr/sbin/nginx')
    prefix = workdir / f'nginx-{port}'
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / 'nginx.conf'
    conf.write_text(NGINX_MAIN.format(prefix=prefix, body=http_body))
    log = prefix / 'stderr.log'
    with open(log, 'ab') as out:
        proc = subprocess.Popen(
            [
                nginx,
                '-p',
                str(prefix),
                '-c',
                str(conf),
                '-e',
                str(prefix / 'error.log'),
                '-g',
                'daemon off;',
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log, {'prefix': prefix})
    try:
        wait_http(server.url + '/healthz', timeout, proc, prefix / 'error.log')
    except BaseException:
        server.stop()
        raise
    return server


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise LookupError(pid)


# -- filestorectl (the daemon) -------------------------------------------------
def ctl_env(**extra: str) -> dict[str, str]:
    """The environment for filestorectl: no WSGI_STORE_* leaking in from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith('WSGI_STORE_') and k != 'NOTIFY_SOCKET'
    }
    env.update(extra)
    return env


def filestorectl(
    *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``filestorectl ARGS`` (the installed console script) to completion."""
    return subprocess.run(
        [str(VENV_BIN / 'filestorectl'), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ctl_env(),
        stdin=subprocess.DEVNULL,
    )


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers under the daemon)."""
    try:
        return [
            int(p) for p in Path(f'/proc/{pid}/task/{pid}/children').read_text().split()
        ]
    except OSError:
        return []


def wait_until(predicate, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f'{what} (waited {timeout} s)')
        time.sleep(step)


@dataclass
class Daemon:
    """A filestorectl-managed service in ``workdir`` (store, pidfile, log)."""

    workdir: Path
    port: int
    flags: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    @property
    def store(self) -> Path:
        return self.workdir / 'store'

    @property
    def pidfile(self) -> Path:
        return self.workdir / 'wsgi-store.pid'

    @property
    def logfile(self) -> Path:
        return self.workdir / 'wsgi-store.log'

    def args(self) -> list[str]:
        """Flags every start/restart gets."""
        return [
            '--host', '127.0.0.1', '--port', str(self.port),
            '--store', str(self.store), '--pidfile', str(self.pidfile),
            '--logfile', str(self.logfile), *self.flags,
        ]  # fmt: skip

    def ctl(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """``filestorectl COMMAND`` for this instance."""
        if command in ('start', 'restart', 'run'):
            return filestorectl(command, *self.args(), *extra)
        return filestorectl(
            command, '--pidfile', str(self.pidfile), '--port', str(self.port), *extra
        )

    def pid(self) -> int | None:
        try:
            text = self.pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def kill(self) -> None:
        """Last resort: SIGKILL the master named in the pidfile and its workers."""
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            return
        for victim in [pid, *children_of(pid)]:
            try:
                os.kill(victim, 9)
            except ProcessLookupError:
                continue
        wait_until(lambda: not pid_alive(pid), 10, f'pid {pid} survived SIGKILL')

    def cleanup(self) -> None:
        """Stop it whatever state it is in (test teardown)."""
        pid = self.pid()
        if pid is not None and pid_alive(pid):
            try:
                self.ctl('stop', '--wait', '20')
            finally:
                self.kill()


def start_daemon(workdir: Path, *flags: str, port: int | None = None) -> Daemon:
    """``filestorectl start`` on a free loopback port; fails the test if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(workdir, port or free_port(), list(flags))
    result = daemon.ctl('start')
    if result.returncode != 0:
        daemon.cleanup()
        raise RuntimeError(
            f'filestorectl start failed:\n{result.stdout}{result.stderr}'
        )
    return daemon
