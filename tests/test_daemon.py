"""filestorectl with real processes: start, stop, restart, reload, status, logs.

Every process is the daemon's (found through its pidfile) and is stopped by
pid in teardown; every wait is bounded; only loopback addresses are used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.servers import (
    ROOT,
    VENV_BIN,
    Daemon,
    children_of,
    ctl_env,
    filestorectl,
    free_port,
    pid_alive,
    require_binary,
    start_daemon,
    wait_until,
)

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons a test started; each is stopped (or killed) afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.cleanup()


def start(daemons: list[Daemon], workdir: Path, *flags: str) -> Daemon:
    daemon = start_daemon(workdir, *flags)
    daemons.append(daemon)
    return daemon


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(('127.0.0.1', port)) == 0


def upload(url: str, data: bytes) -> str:
    resp = requests.post(url + '/', data=data, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.text.strip()


def test_lifecycle_with_requests_and_curl(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    d = start(daemons, tmp_path / 'svc')
    pid = d.pid()
    assert pid is not None and pid_alive(pid)
    assert d.ctl('status').returncode == 0
    assert d.ctl('get_pid').stdout.strip() == str(pid)

    data = os.urandom(200_000)
    digest = upload(d.url, data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert requests.get(f'{d.url}/?file_hash={digest}', timeout=30).content == data
    assert requests.delete(f'{d.url}/files/{digest}', timeout=30).status_code == 200
    assert requests.get(f'{d.url}/files/{digest}', timeout=30).status_code == 404

    curl = shutil.which('curl')
    assert curl, 'curl is needed (installed by .ci/run)'
    src, out = tmp_path / 'photo.jpg', tmp_path / 'copy.jpg'
    src.write_bytes(os.urandom(300_000))
    kept = run([curl, '-sf', '--data-binary', f'@{src}', d.url + '/']).strip()
    assert kept == hashlib.sha256(src.read_bytes()).hexdigest()
    run([curl, '-sf', '-o', str(out), f'{d.url}/?file_hash={kept}'])
    assert out.read_bytes() == src.read_bytes()
    scratch = upload(d.url, b'to be deleted by curl')
    run([curl, '-sf', '-X', 'DELETE', f'{d.url}/?file_hash={scratch}'])
    assert requests.get(f'{d.url}/files/{scratch}', timeout=30).status_code == 404

    restarted = d.ctl('restart')
    assert restarted.returncode == 0, restarted.stderr
    new_pid = d.pid()
    assert new_pid is not None and new_pid != pid and not pid_alive(pid)
    got = requests.get(f'{d.url}/files/{kept}', timeout=30)
    assert got.status_code == 200 and got.content == src.read_bytes()

    stopped = d.ctl('stop')
    assert stopped.returncode == 0 and f'stopped (pid {new_pid})' in stopped.stdout
    assert not pid_alive(new_pid)
    assert not port_open(d.port)
    assert not d.pidfile.exists()
    assert d.ctl('status').returncode == 3
    again = d.ctl('stop')
    assert again.returncode == 0 and 'not running' in again.stdout


def run(cmd: list[str]) -> str:
    return subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_reload_keeps_a_running_download(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path / 'svc')
    data = os.urandom(64 * MiB)
    digest = upload(d.url, data)
    master = d.pid()
    assert master is not None
    old_workers = set(children_of(master))
    with requests.get(f'{d.url}/files/{digest}', stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        chunks = resp.iter_content(MiB)
        received = [next(chunks)]  # the download is under way in an old worker
        reloaded = d.ctl('reload')
        assert reloaded.returncode == 0, reloaded.stderr
        wait_until(
            lambda: set(children_of(master)) - old_workers,
            30,
            'no new worker after SIGHUP',
        )
        received.extend(chunks)
    got = b''.join(received)
    assert len(got) == len(data) and hashlib.sha256(got).hexdigest() == digest
    wait_until(
        lambda: not any(pid_alive(p) for p in old_workers), 30, 'old workers remain'
    )
    assert d.pid() == master  # same master, new workers
    assert requests.get(f'{d.url}/healthz', timeout=10).status_code == 200


def test_stale_pidfile_after_kill_9(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path / 'svc')
    master = d.pid()
    assert master is not None
    d.kill()  # SIGKILL the master and its workers, by pid
    assert d.pidfile.exists()
    status = d.ctl('status')
    assert status.returncode == 1 and 'dead' in status.stdout
    wait_until(lambda: not port_open(d.port), 10, 'port still open after kill -9')

    restarted = d.ctl('start')
    assert restarted.returncode == 0, restarted.stderr
    assert 'stale pidfile' in restarted.stderr
    assert d.pid() not in (None, master)
    assert requests.get(f'{d.url}/healthz', timeout=10).status_code == 200


def test_double_start_and_status_codes(daemons: list[Daemon], tmp_path: Path) -> None:
    d = Daemon(tmp_path / 'svc', free_port())
    d.workdir.mkdir()
    assert d.ctl('status').returncode == 3
    assert d.ctl('get_pid').returncode == 3
    assert d.ctl('reload').returncode == 7
    d = start(daemons, d.workdir)
    second = d.ctl('start')
    assert second.returncode == 1
    assert f'already running, pid {d.pid()}' in second.stderr
    assert d.ctl('status').returncode == 0


def test_start_refuses_a_busy_port(daemons: list[Daemon], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        d = Daemon(tmp_path / 'svc', busy.getsockname()[1])
        d.workdir.mkdir()
        result = d.ctl('start')
    assert result.returncode == 1
    assert 'cannot listen on 127.0.0.1' in result.stderr
    assert not d.pidfile.exists()


def test_start_refuses_an_unwritable_store(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        store = tmp_path / 'file-not-dir'
        store.write_text('')  # root writes anywhere: use a store that is a file
    else:
        store = tmp_path / 'ro'
        store.mkdir(mode=0o500)
    d = Daemon(tmp_path / 'svc', free_port(), ['--store', str(store)])
    d.workdir.mkdir()
    result = d.ctl('start')
    assert result.returncode == 1
    problem = 'is a file, not a directory' if os.geteuid() == 0 else 'is not writable'
    assert result.stderr.startswith(f'filestorectl: store {store} {problem}')


def test_logfile_has_app_and_access_lines_and_reopens_on_usr1(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    work = tmp_path / 'svc'
    (work / 'store' / 'tmp').mkdir(parents=True)
    (work / 'store' / 'tmp' / 'left-by-a-crash').write_bytes(b'partial upload')
    d = start(daemons, work, '--verify-reads')
    text = d.logfile.read_text()
    assert 'wsgi_store.backends.fs: removed 1 stale temp file(s)' in text  # app
    # Access lines are flushed in batches, within a second (logs.FLUSH_SECONDS).
    wait_until(
        lambda: '"GET /healthz HTTP/1.1" 200' in d.logfile.read_text(),
        10,
        'no access line for the start-up health check',
    )

    data = os.urandom(100_000)
    digest = upload(d.url, data)
    rotated = d.logfile.with_name('wsgi-store.log.1')
    d.logfile.rename(rotated)
    master = d.pid()
    assert master is not None
    os.kill(master, signal.SIGUSR1)
    wait_until(d.logfile.exists, 10, 'the master did not reopen its log on USR1')
    probes = iter(range(10_000))

    sent: list[str] = []

    def worker_logs_to_new_file() -> bool:
        sent.append(f'/healthz?probe={next(probes)}')
        requests.get(d.url + sent[-1], timeout=10)
        text = d.logfile.read_text()  # access lines arrive within a second
        return any(marker in text for marker in sent)

    wait_until(worker_logs_to_new_file, 10, 'workers still log to the old file')
    # An app record from a worker (the root logger's handler) lands there too.
    obj = d.store / digest[:2] / digest
    obj.write_bytes(bytes(len(data)))  # corrupt it in place
    with pytest.raises(requests.RequestException):
        requests.get(f'{d.url}/files/{digest}', timeout=30).raise_for_status()
    wait_until(
        lambda: f'object {digest} is corrupt' in d.logfile.read_text(),
        10,
        'the corruption error is not in the reopened log',
    )
    assert f'object {digest} is corrupt' not in rotated.read_text()


def test_shipped_logrotate_entry_rotates_a_running_daemon(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    logrotate = require_binary('logrotate', '/usr/sbin/logrotate')
    d = start(daemons, tmp_path / 'svc')
    shipped = (ROOT / 'contrib' / 'logrotate' / 'wsgi-store').read_text()
    conf = tmp_path / 'logrotate.conf'
    conf.write_text(
        shipped.replace('/var/log/wsgi-store/wsgi-store.log', str(d.logfile))
        .replace('/run/wsgi-store/wsgi-store.pid', str(d.pidfile))
        .replace('/opt/wsgi-store/bin/filestorectl', str(VENV_BIN / 'filestorectl'))
    )
    conf.chmod(0o644)
    run([logrotate, '--force', '--state', str(tmp_path / 'state'), str(conf)])
    rotated = d.logfile.with_name('wsgi-store.log.1')
    assert 'Booting worker' in rotated.read_text()
    wait_until(d.logfile.exists, 10, 'no new log file after postrotate')

    def logs_into_new_file() -> bool:
        # Workers reopen on their own USR1, a moment after the master: retry.
        requests.get(d.url + '/healthz?after-rotation', timeout=10)
        return '/healthz?after-rotation' in d.logfile.read_text()

    wait_until(logs_into_new_file, 10, 'the service does not log into the new file')


def test_stop_lets_an_inflight_upload_finish(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    d = start(daemons, tmp_path / 'svc')
    started, signalled = threading.Event(), threading.Event()
    hasher = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(32):
            chunk = bytes([i]) * MiB
            hasher.update(chunk)
            yield chunk
            if i == 0:
                started.set()
                assert signalled.wait(60), 'stop never sent SIGTERM'

    with ThreadPoolExecutor(2) as pool:
        upload_done = pool.submit(requests.post, d.url + '/', data=body(), timeout=120)
        assert started.wait(60)
        stop_done = pool.submit(d.ctl, 'stop')
        wait_until(
            lambda: 'Handling signal: term' in d.logfile.read_text(),
            30,
            'the master never got SIGTERM',
        )
        signalled.set()
        resp = upload_done.result(timeout=120)
        stopped = stop_done.result(timeout=120)
    assert resp.status_code == 200 and resp.text.strip() == hasher.hexdigest()
    assert stopped.returncode == 0 and 'stopped' in stopped.stdout
    digest = hasher.hexdigest()
    assert (d.store / digest[:2] / digest).stat().st_size == 32 * MiB


def test_open_address_without_tokens_warns(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface: the warning is printed and the
    # port check fails, so nothing ever listens beyond loopback.
    d = Daemon(tmp_path / 'svc', free_port(), ['--host', '192.0.2.1'])
    d.workdir.mkdir()
    result = filestorectl('start', *d.args()[2:])  # drop --host 127.0.0.1
    assert (
        'anyone who can reach this address can read, write and delete' in result.stderr
    )
    assert result.returncode == 1 and 'cannot listen on 192.0.2.1' in result.stderr


def test_restart_with_a_bad_tokens_file_leaves_the_service_running(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    d = start(daemons, tmp_path / 'svc')
    pid = d.pid()
    bad = tmp_path / 'tokens'
    bad.write_text('short read\n')
    result = d.ctl('restart', '--tokens', str(bad))
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert 'line 1: the token is shorter than 16 characters' in result.stderr
    assert 'the running service was left alone' in result.stderr
    assert d.pid() == pid and pid_alive(pid)
    assert requests.get(d.url + '/healthz', timeout=5).ok


def _default_env(runtime: Path) -> dict[str, str]:
    runtime.mkdir(mode=0o700, exist_ok=True)
    return ctl_env(XDG_RUNTIME_DIR=str(runtime))


def _run_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / 'filestorectl'), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def test_quick_start_defaults_are_found_from_another_directory(tmp_path: Path) -> None:
    """`start` with no --pidfile: ./store, ./wsgi-store.log, and a per-user
    pidfile that `status` and `stop` find from any directory."""
    env = _default_env(tmp_path / 'run')
    here, elsewhere = tmp_path / 'clone', tmp_path / 'elsewhere'
    here.mkdir()
    elsewhere.mkdir()
    port = str(free_port())
    pidfile = tmp_path / 'run' / 'wsgi-store' / f'{port}.pid'
    started = _run_in(here, env, 'start', '--port', port)
    try:
        assert started.returncode == 0, started.stderr
        assert (here / 'store').is_dir() and (here / 'wsgi-store.log').is_file()
        assert pidfile.is_file() and not (here / 'wsgi-store.pid').exists()
        status = _run_in(elsewhere, env, 'status', '--port', port)
        assert status.returncode == 0 and status.stdout.startswith('running, pid ')
        stopped = _run_in(elsewhere, env, 'stop', '--port', port)
        assert stopped.returncode == 0 and 'stopped (pid' in stopped.stdout
        assert not pidfile.exists()
    finally:
        text = pidfile.read_text().strip() if pidfile.exists() else ''
        if text.isdigit() and pid_alive(int(text)):
            os.kill(int(text), signal.SIGKILL)


def test_status_and_stop_say_when_the_port_answers_without_a_pidfile(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    d = start(daemons, tmp_path / 'svc')
    other = str(tmp_path / 'other.pid')
    port = str(d.port)
    expected = (
        f'filestorectl: no running service recorded in {other}, but '
        f'http://127.0.0.1:{port}/healthz answers: it was started with another '
        '--pidfile (or by another user or systemd); give that --pidfile\n'
    )
    status = filestorectl('status', '--pidfile', other, '--port', port)
    assert status.returncode == 4 and status.stderr == expected
    stop = filestorectl('stop', '--pidfile', other, '--port', port)
    assert stop.returncode == 1 and stop.stderr == expected
    assert pid_alive(d.pid() or 0)
