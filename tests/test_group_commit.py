"""Issue 15: group commit that really groups (one syncfs per round of uploads).

The syscall-order proof for batched commits: every upload's data is flushed
(a syncfs begun after its data was written, finished) before its rename, and
a syncfs begun after its rename finished before it is answered.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest

from wsgi_store.backends import dirsync, groupcommit, writeback
from wsgi_store.backends.fs import FilesystemBackend

pytestmark = pytest.mark.skipif(
    not writeback.HAVE_SYNCFS, reason='syncfs/sync_file_range are Linux-only'
)
N = 7  # queued behind a first upload held inside its flush


class Recorder:
    """Records flushes, renames and answers; holds the first flush on a gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []  # appends are atomic under the GIL
        self.gate, self.entered = threading.Event(), threading.Event()
        real_syncfs, real_replace = writeback.syncfs, os.replace
        real_fsync_dir, real_fdatasync = dirsync.fsync_dir, os.fdatasync

        def syncfs(fd: int) -> None:
            at = len(self.events)
            self.events.append(('syncfs-begin', str(at)))
            real_syncfs(fd)
            self.events.append(('syncfs-end', str(at)))

        def replace(src, dst) -> None:
            real_replace(src, dst)
            self.events.append(('rename', Path(dst).name))

        def fsync_dir(path) -> None:
            self.entered.set()
            assert self.gate.wait(10)
            self.events.append(('fsync_dir-begin', Path(path).name))
            real_fsync_dir(path)
            self.events.append(('fsync_dir', Path(path).name))

        def fdatasync(fd: int) -> None:
            with open(f'/proc/self/fd/{fd}', 'rb') as f:  # named by its content
                self.events.append(('fdatasync', hashlib.sha256(f.read()).hexdigest()))
            real_fdatasync(fd)

        monkeypatch.setattr(writeback, 'syncfs', syncfs)
        monkeypatch.setattr(os, 'replace', replace)
        monkeypatch.setattr(dirsync, 'fsync_dir', fsync_dir)
        monkeypatch.setattr(os, 'fdatasync', fdatasync)

    def index(self, event: tuple[str, str]) -> int:
        return self.events.index(event)

    def flushes(self) -> list[tuple[int, int]]:
        """(begin, end) event positions of every completed syncfs."""
        return [
            (i, self.index(('syncfs-end', tag)))
            for i, (kind, tag) in enumerate(self.events)
            if kind == 'syncfs-begin' and ('syncfs-end', tag) in self.events
        ]


def _put_all(backend: FilesystemBackend, rec: Recorder, bodies: list[bytes]) -> dict:
    """A first upload is held in its flush; ``bodies`` queue behind it."""
    results: dict[int, object] = {}

    def put(i: int, body: bytes) -> None:
        rec.events.append(('written', str(i)))  # stage() writes before commit
        try:
            results[i] = backend.put(io.BytesIO(body))
        except OSError as exc:
            results[i] = exc
        rec.events.append(('answered', str(i)))

    first = threading.Thread(target=put, args=(-1, b'first upload'))
    first.start()
    assert rec.entered.wait(10), 'the first upload never reached its flush'
    threads = [threading.Thread(target=put, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    committer = backend._committer
    deadline = time.monotonic() + 10
    while len(committer._queue) < len(bodies) and time.monotonic() < deadline:
        time.sleep(0.01)  # each queued behind the held leader
    rec.gate.set()
    for t in [first, *threads]:
        t.join(20)
    assert not any(t.is_alive() for t in [first, *threads])
    return results


def test_concurrent_uploads_share_one_flush_per_round_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FilesystemBackend(tmp_path / 'store')
    rec = Recorder(monkeypatch)
    bodies = [f'body {i}\n'.encode() * 100 for i in range(N)]
    results = _put_all(backend, rec, bodies)
    flushes = rec.flushes()
    for i, body in enumerate(bodies):
        name = hashlib.sha256(body).hexdigest()
        assert results[i].hash == name and results[i].created is True
        written = rec.index(('written', str(i)))
        renamed = rec.index(('rename', name))
        answered = rec.index(('answered', str(i)))
        assert any(written < b and e < renamed for b, e in flushes), (
            f'upload {i} renamed before a flush of its data'
        )
        assert any(renamed < b and e < answered for b, e in flushes), (
            f'upload {i} answered before a flush of its rename'
        )
    assert len(flushes) == 2  # 7 uploads: one flush for their data, one for names
    assert backend.temp_names() == []


def test_a_dedupe_hit_in_a_batch_is_answered_after_a_flush_that_followed_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FilesystemBackend(tmp_path / 'store')
    rec = Recorder(monkeypatch)
    body = b'the same bytes\n' * 50
    name = hashlib.sha256(body).hexdigest()
    results = _put_all(backend, rec, [body, body, body])
    assert sorted(r.created for r in results.values() if r.hash == name) == [
        False,
        False,
        True,
    ]
    renamed = rec.index(('rename', name))
    flushes = rec.flushes()
    for i in range(3):
        answered = rec.index(('answered', str(i)))
        assert any(renamed < b and e < answered for b, e in flushes)
    assert backend.temp_names() == []


def test_a_failed_syncfs_fails_its_round_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FilesystemBackend(tmp_path / 'store')
    rec = Recorder(monkeypatch)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, 'injected syncfs failure')

    monkeypatch.setattr(writeback, 'syncfs', failing)
    bodies = [f'doomed {i}'.encode() for i in range(3)]
    results = _put_all(backend, rec, bodies)
    for i in range(3):
        assert isinstance(results[i], OSError) and results[i].errno == errno.EIO
    first = hashlib.sha256(b'first upload').hexdigest()
    assert [n for kind, n in rec.events if kind == 'rename'] == [first]
    assert all(not backend.exists(hashlib.sha256(b).hexdigest()) for b in bodies)
    assert backend.temp_names() == []


def test_a_writeback_error_fails_only_the_upload_it_belongs_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs succeeds, but one file's own data hit a write error: that upload
    is refused (never renamed); the others of the round are stored."""
    backend = FilesystemBackend(tmp_path / 'store')
    rec = Recorder(monkeypatch)
    real_wait = writeback.wait_written
    bad = b'bad sector'

    def wait_written(fd: int) -> None:
        with open(f'/proc/self/fd/{fd}', 'rb') as f:
            if f.read() == bad:
                raise OSError(errno.EIO, 'injected writeback error')
        real_wait(fd)

    monkeypatch.setattr(groupcommit.writeback, 'wait_written', wait_written)
    results = _put_all(backend, rec, [b'good one', bad, b'good two'])
    assert isinstance(results[1], OSError) and results[1].errno == errno.EIO
    assert not backend.exists(hashlib.sha256(bad).hexdigest())
    assert results[0].created and results[2].created
    assert backend.temp_names() == []


def test_a_lone_upload_keeps_the_per_file_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else in flight: fdatasync, rename, directory fsync; no syncfs
    (it would flush every other writer's data on the filesystem)."""
    backend = FilesystemBackend(tmp_path / 'store')
    rec = Recorder(monkeypatch)
    rec.gate.set()
    name = backend.put(io.BytesIO(b'alone')).hash
    assert rec.events == [
        ('fdatasync', name),
        ('rename', name),
        ('fsync_dir-begin', name[:2]),
        ('fsync_dir', name[:2]),
    ]


def test_mode_files_flushes_each_file_before_its_rename_and_its_shard_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-file batch (no syncfs): every upload's fdatasync comes before its
    rename; an fsync of its shard, begun after the rename, ends before the answer."""
    backend = FilesystemBackend(tmp_path / 'store', group_commit='files')
    rec = Recorder(monkeypatch)
    bodies = [f'file mode {i}\n'.encode() * 30 for i in range(N)]
    results = _put_all(backend, rec, bodies)
    assert rec.flushes() == []
    for i, body in enumerate(bodies):
        name = hashlib.sha256(body).hexdigest()
        assert results[i].created is True
        written = rec.index(('written', str(i)))
        synced = rec.index(('fdatasync', name))
        renamed = rec.index(('rename', name))
        answered = rec.index(('answered', str(i)))
        assert written < synced < renamed < answered
        assert any(
            renamed < b < rec.events.index(('fsync_dir', name[:2]), b) < answered
            for b, e in enumerate(rec.events)
            if e == ('fsync_dir-begin', name[:2])
        ), f'upload {i} answered before its shard was flushed after its rename'
    assert backend.temp_names() == []


def test_an_unknown_group_commit_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='group commit mode'):
        FilesystemBackend(tmp_path / 'store', group_commit='sometimes')


@pytest.mark.parametrize('mode', ['syncfs', 'files', 'off'])
def test_group_commit_mode_comes_from_the_setting(tmp_path, mode) -> None:
    from wsgi_store.backends import make_backend
    from wsgi_store.config import Config, ConfigError

    config = Config.from_env(
        {'WSGI_STORE_STORE_DIR': str(tmp_path), 'WSGI_STORE_GROUP_COMMIT': mode}
    )
    backend = make_backend(config)
    try:
        assert backend._committer.mode in (mode, 'off')  # 'off' without syncfs(2)
        assert backend.put(io.BytesIO(b'abc')).created
    finally:
        backend.close()
    with pytest.raises(ConfigError, match='WSGI_STORE_GROUP_COMMIT'):
        Config.from_env({'WSGI_STORE_GROUP_COMMIT': 'sometimes'})
