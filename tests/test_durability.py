"""Issue 11 items 3 and 5: what an acknowledged upload promises.

A dedupe hit (``created: false``) is an acknowledgement too: the object it points
at must be durable first, whoever wrote it (trap 15). An upload over a stored
object of the wrong size replaces it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from wsgi_store.backends import dirsync
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.maintenance.verify import verify_backend

DATA = b'durable bytes\n' * 64
H = hashlib.sha256(DATA).hexdigest()


def test_dedupe_waits_for_the_first_uploaders_directory_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first uploader is blocked inside its shard flush; a second upload of
    the same bytes must not return before that flush finished."""
    backend = FilesystemBackend(tmp_path / 'store')
    events: list[str] = []
    entered, release = threading.Event(), threading.Event()
    real = dirsync.fsync_dir

    def flush(path: str) -> None:
        me = threading.current_thread().name
        events.append(f'flush-begin {me}')
        if me == 'first':
            entered.set()
            release.wait(10)
        real(path)
        events.append(f'flush-end {me}')

    monkeypatch.setattr(dirsync, 'fsync_dir', flush)
    created: dict[str, bool] = {}

    def upload() -> None:
        created[threading.current_thread().name] = backend.put(io.BytesIO(DATA)).created
        events.append(f'returned {threading.current_thread().name}')

    first = threading.Thread(target=upload, name='first')
    first.start()
    assert entered.wait(10), 'the first upload never reached its directory flush'
    second = threading.Thread(target=upload, name='second')
    second.start()
    second.join(0.5)
    still_waiting = second.is_alive()
    release.set()
    first.join(10)
    second.join(10)
    assert not first.is_alive() and not second.is_alive()
    assert still_waiting, 'created:false answered while the object was not durable'
    assert created == {'first': True, 'second': False}
    assert events.index('returned second') > events.index('flush-end first')


def test_repeat_upload_after_a_failed_flush_flushes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard flush fails after the rename (the file stays visible): a repeat
    upload in another worker (its own backend) flushes the object and its shard
    itself before answering created:false."""
    root = tmp_path / 'store'
    first, other = FilesystemBackend(root), FilesystemBackend(root)
    flushed: list[str] = []
    failures = [OSError(errno.EIO, 'injected flush failure')]
    real = dirsync.fsync_dir

    def flush(path: str) -> None:
        if failures:
            raise failures.pop()
        flushed.append(os.fspath(path))
        real(path)

    monkeypatch.setattr(dirsync, 'fsync_dir', flush)
    with pytest.raises(OSError, match='injected'):
        first.put(io.BytesIO(DATA))  # no 2xx for this one
    assert other.exists(H)  # visible, but not known to be durable

    synced: list[str] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.readlink(f'/proc/self/fd/{fd}'))
        real_fdatasync(fd)

    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    assert other.put(io.BytesIO(DATA)).created is False
    assert other.path_for(H) in synced  # the existing object's data
    assert flushed == [str(root / H[:2])]  # and its directory entry


def test_upload_over_a_corrupt_object_of_another_size_replaces_it(
    tmp_path: Path,
) -> None:
    backend = FilesystemBackend(tmp_path / 'store')
    backend.put(io.BytesIO(DATA))
    path = Path(backend.path_for(H))
    path.write_bytes(b'truncated by a bad disk')
    result = backend.put(io.BytesIO(DATA))
    assert result.created is True  # the upload's bytes are what is stored now
    assert path.read_bytes() == DATA
    assert backend.temp_names() == []


def test_upload_over_a_corrupt_object_serves_the_right_bytes(
    make_app, store_dir: Path
) -> None:
    app = make_app()
    app.post('/files', DATA, content_type='application/octet-stream')
    (store_dir / H[:2] / H).write_bytes(b'short')
    resp = app.post(
        '/files',
        DATA,
        content_type='application/octet-stream',
        headers={'Accept': 'application/json'},
    )
    assert resp.json['created'] is True and resp.json['hash'] == H
    assert app.get(f'/files/{H}').body == DATA


def test_same_size_corruption_is_left_to_verify(tmp_path: Path) -> None:
    """Not caught on upload (that would mean re-hashing every dedupe hit)."""
    backend = FilesystemBackend(tmp_path / 'store')
    backend.put(io.BytesIO(DATA))
    path = Path(backend.path_for(H))
    path.write_bytes(b'x' * len(DATA))
    assert backend.put(io.BytesIO(DATA)).created is False
    report = verify_backend(backend, out=io.StringIO())
    assert report.corrupt == [H]


# -- the same order on real gunicorn, across workers ---------------------------------
FLUSH_GATE_HOOK = """
import os
import time

GATE = os.environ.get('H2_TEST_FLUSH_GATE')
if GATE:
    from wsgi_store.backends import dirsync

    _real = dirsync.fsync_dir

    def fsync_dir(path):
        # Held while the gate file exists (bounded): an injected slow flush.
        deadline = time.monotonic() + 60
        while os.path.exists(GATE) and time.monotonic() < deadline:
            open(GATE + '.entered', 'a').close()
            time.sleep(0.02)
        _real(path)

    dirsync.fsync_dir = fsync_dir
"""


def test_repeat_upload_on_gunicorn_waits_for_the_first_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers; the first upload is held inside its shard directory flush
    (after its rename). A second upload of the same bytes, whichever worker or
    thread gets it, is not answered until that flush could finish."""
    import requests

    from tests.servers import start_gunicorn, wait_until

    hooks = tmp_path / 'hooks'
    hooks.mkdir()
    (hooks / 'sitecustomize.py').write_text(FLUSH_GATE_HOOK)
    gate = tmp_path / 'flush-gate'
    monkeypatch.setenv('H2_TEST_FLUSH_GATE', str(gate))
    paths = [str(hooks), os.environ.get('PYTHONPATH', '')]
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(p for p in paths if p))
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=2)
    try:
        body = os.urandom(64 * 1024)
        digest = hashlib.sha256(body).hexdigest()
        gate.touch()
        answers: dict[str, requests.Response] = {}

        def upload(name: str) -> None:
            answers[name] = requests.post(
                f'{server.url}/files',
                data=body,
                headers={'Accept': 'application/json'},
                timeout=90,
            )

        first = threading.Thread(target=upload, args=('first',))
        first.start()
        wait_until(
            lambda: (
                (store / digest[:2] / digest).exists()
                and Path(f'{gate}.entered').exists()
            ),
            30,
            'the first upload never reached its directory flush',
        )
        second = threading.Thread(target=upload, args=('second',))
        second.start()
        second.join(2)
        answered_early = not second.is_alive()
        gate.unlink()
        first.join(60)
        second.join(60)
        assert not answered_early, (
            'created:false answered before the object was durable'
        )
        assert answers['first'].status_code == 200
        assert answers['first'].json()['created'] is True
        assert answers['second'].status_code == 200
        assert answers['second'].json()['created'] is False
    finally:
        gate.unlink(missing_ok=True)
        server.stop()
