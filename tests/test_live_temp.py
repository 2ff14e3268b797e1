"""Issue 11 item 4: no sweeper ever removes the temp file of a live upload.

A real gunicorn receives half of an upload; meanwhile a second instance starts
on the same store (its start-up sweep runs in ``on_starting``), ``gc`` runs with
no age limit, or ``verify --repair`` runs. Then the client sends the rest: the
upload must end in 200 with the right hash.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    ROOT,
    VENV_BIN,
    Server,
    filestorectl,
    start_daemon,
    start_gunicorn,
    store_env,
    wait_until,
)
from tests.test_faults import read_response, request_head
from wsgi_store.backends.fs import FilesystemBackend

BODY = os.urandom(256 * 1024)


@pytest.fixture(scope='module')
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp('live-temp')
    server = start_gunicorn(workdir, workdir / 'store', workers=1)
    server.extra['store'] = workdir / 'store'
    server.extra['workdir'] = workdir
    try:
        yield server
    finally:
        server.stop()


def parts(store: Path) -> list[Path]:
    return sorted((store / 'tmp').glob('*.part'))


def half_sent_upload(server: Server, body: bytes) -> socket.socket:
    """Send the head and half the body; return once the temp file exists."""
    before = set(parts(server.extra['store']))
    sock = socket.create_connection(('127.0.0.1', server.port), timeout=30)
    head = {'Content-Length': str(len(body)), 'Connection': 'close'}
    sock.sendall(request_head('POST', '/files', head) + body[: len(body) // 2])
    wait_until(
        lambda: set(parts(server.extra['store'])) - before, 20, 'no temp file appeared'
    )
    return sock


def finish(sock: socket.socket, body: bytes) -> None:
    """Send the rest; the upload must be stored whole under its hash."""
    with sock:
        sock.sendall(body[len(body) // 2 :])
        resp = read_response(sock, timeout=30)
    digest = hashlib.sha256(body).hexdigest()
    assert resp is not None and resp.status == 200, resp
    assert resp.body == f'{digest}\n'.encode()


def test_second_gunicorn_on_same_store_and_port_keeps_live_upload(running) -> None:
    body = os.urandom(len(BODY))
    sock = half_sent_upload(running, body)
    env = store_env(running.extra['store'], running.port)
    second = subprocess.run(
        [str(VENV_BIN / 'gunicorn'), '-c', str(ROOT / 'gunicorn.conf.py')],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0  # Address already in use, after its sweep
    assert 'in use' in second.stdout + second.stderr
    finish(sock, body)


def test_filestorectl_start_on_same_store_keeps_live_upload(running) -> None:
    body = os.urandom(len(BODY))
    sock = half_sent_upload(running, body)
    other = running.extra['workdir'] / 'second'
    daemon = start_daemon(other, '--store', str(running.extra['store']))
    try:
        assert daemon.port != running.port and daemon.pidfile.is_file()
    finally:
        daemon.cleanup()
    finish(sock, body)


def test_gc_older_than_0_keeps_live_upload(running) -> None:
    body = os.urandom(len(BODY))
    sock = half_sent_upload(running, body)
    stale = running.extra['store'] / 'tmp' / '1.1.part'  # no writer holds it
    stale.write_bytes(b'left by a crash')
    done = filestorectl('gc', '--older-than', '0', '--store', str(stale.parents[1]))
    assert done.returncode == 0, done.stderr
    assert 'removed 1 temporary upload(s)' in done.stdout
    assert not stale.exists()
    finish(sock, body)


def test_verify_repair_keeps_live_upload(running) -> None:
    body = os.urandom(len(BODY))
    sock = half_sent_upload(running, body)
    done = filestorectl('verify', '--repair', '--store', str(running.extra['store']))
    assert done.returncode == 0, done.stdout + done.stderr
    finish(sock, body)


def test_sweep_in_another_instance_skips_a_staged_upload(tmp_path: Path) -> None:
    """In-process: a staged (not yet committed) temp file is live until commit."""
    writer = FilesystemBackend(tmp_path / 'store')
    staged = writer.stage(io.BytesIO(b'staged, not committed'))
    sweeper = FilesystemBackend(tmp_path / 'store')  # as another process would
    assert sweeper.sweep_temp(0) == 0
    assert writer.temp_names() != []
    result = writer.commit(staged)
    assert writer.exists(result.hash) and writer.temp_names() == []


def test_writer_takes_a_new_name_if_swept_before_it_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper may remove a temp file between the writer's open and its lock:
    the writer then must not write into the unlinked file."""
    from wsgi_store.backends import fstemp

    real_flock = fstemp.fcntl.flock
    swept: list[str] = []

    def flock(fd: int, op: int) -> None:
        if not swept:  # a sweeper won the race for the first file
            path = os.readlink(f'/proc/self/fd/{fd}')
            swept.append(path)
            assert fstemp.remove_if_unlocked(path)
        real_flock(fd, op)

    monkeypatch.setattr(fstemp.fcntl, 'flock', flock)
    temp = fstemp.create_locked(f'{tmp_path}/')
    try:
        assert swept and temp.path != swept[0]
        assert os.path.samestat(os.stat(temp.path), os.fstat(temp.fd))
    finally:
        temp.remove()
    assert list(tmp_path.iterdir()) == []


def test_sweeper_never_removes_a_file_renamed_after_it_opened_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp name was committed (renamed into a shard) and a new file took
    the name between the sweeper's open and its unlink: neither is removed."""
    from wsgi_store.backends import fstemp

    path = tmp_path / '1.1.part'
    path.write_bytes(b'committed')
    committed = tmp_path / 'object'
    real_flock = fstemp.fcntl.flock

    def flock(fd: int, op: int) -> None:
        os.rename(path, committed)
        path.write_bytes(b'a new upload')
        real_flock(fd, op)

    monkeypatch.setattr(fstemp.fcntl, 'flock', flock)
    assert fstemp.remove_if_unlocked(str(path)) is False
    assert committed.read_bytes() == b'committed'
    assert path.read_bytes() == b'a new upload'
