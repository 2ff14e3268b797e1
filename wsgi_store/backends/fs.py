"""The sharded filesystem backend: the object ``abcdef...`` is ``STORE/ab/abcdef...``.

Write path (one pass): a temp file in ``STORE/tmp/`` (``O_EXCL``, mode 0640,
``flock``-ed by its writer for its whole life, see :mod:`.fstemp`) is hashed while
written and length-checked; then :mod:`.groupcommit` makes its data durable,
``os.replace``-s it into its shard and flushes that entry, sharing one flush
(``syncfs``) among concurrent uploads. Any failure removes the temp file.

NOTE: a dedupe hit (the object exists) is an acknowledgement too: it flushes the
existing object and its shard directory itself (through the same group commit),
because another worker may have renamed it in a moment ago and not finished its
own flush, or that flush may have failed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, NoReturn

from wsgi_store.backends import fscheck, fstemp
from wsgi_store.backends.base import (
    Backend,
    Download,
    ObjectInfo,
    PutResult,
    ReadyCheck,
    Staged,
)
from wsgi_store.backends.dirsync import DirSyncer
from wsgi_store.backends.fslayout import LAYOUT_VERSION, META_NAME, SHARDS, init_layout
from wsgi_store.backends.fsquarantine import quarantine_if_same, quarantine_target
from wsgi_store.backends.groupcommit import GroupCommitter, Job
from wsgi_store.backends.streaming import copy_stream
from wsgi_store.backends.writeback import WritebackWriter, start_writeback
from wsgi_store.errors import InsufficientStorage, NotFound
from wsgi_store.hashing import hex_length, is_object_name, new_hasher

# LAYOUT_VERSION, META_NAME and SHARDS are re-exported for older imports.
__all__ = ['LAYOUT_VERSION', 'META_NAME', 'SHARDS', 'FilesystemBackend']

logger = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Where `nginx-config --body-offload` has nginx write request bodies (in tmp/).
NGINX_BODY_DIR = 'nginx-body'
NGINX_BODY_MIN_AGE = 3600.0  # seconds


class FilesystemBackend(Backend):
    """Objects as files in 256 shard directories under one root."""

    name = 'fs'
    live_temps_locked = True  # see fstemp: every writer holds a lock

    def __init__(
        self,
        root: Path | str,
        algorithm: str = 'sha256',
        *,
        fsync: bool = True,
        chunk_bytes: int = 1 << 20,
        min_free_bytes: int = 0,
        min_free_inodes: int = 0,
        group_commit: str = 'syncfs',
    ) -> None:
        self.root = Path(root).absolute()
        self.algorithm = algorithm
        self.hex_length = hex_length(algorithm)  # also validates the name
        self.fsync = fsync
        self.chunk_bytes = chunk_bytes
        self.min_free_bytes = min_free_bytes
        self.min_free_inodes = min_free_inodes
        self.tmp = self.root / 'tmp'
        self._prefix = f'{self.root}/'
        self._tmp_prefix = f'{self.tmp}/'
        self.quarantine_dir = self.root / 'quarantine'
        self._syncer = DirSyncer()
        self._committer = GroupCommitter(
            str(self.root), self._flush_existing, mode=group_commit
        )
        init_layout(self.root, self.algorithm)

    @classmethod
    def from_config(cls, config: object) -> FilesystemBackend:
        from wsgi_store.config import Config

        assert isinstance(config, Config)
        return cls(
            config.store_dir,
            config.hash,
            fsync=config.fsync,
            group_commit=config.group_commit,
            chunk_bytes=config.chunk_bytes,
            min_free_bytes=config.readyz_min_free_bytes,
            min_free_inodes=config.readyz_min_free_inodes,
        )

    def path_for(self, hex_hash: str) -> str:
        """Where an object lives. ``hex_hash`` must already be validated.

        A plain string: pathlib costs ~10 µs a call on the small-GET hot path.
        """
        return f'{self._prefix}{hex_hash[:2]}/{hex_hash}'

    # -- writes --------------------------------------------------------------
    def stage(
        self,
        source,
        *,
        extra_algorithms: Iterable[str] = (),
        length: int | None = None,
        max_bytes: int = 0,
    ) -> Staged:
        try:
            temp = fstemp.create_locked(self._tmp_prefix)
        except OSError as exc:
            _raise_storage_error(exc)
        try:
            result = copy_stream(
                source,
                WritebackWriter(temp.fd, eager=self.fsync),
                [self.algorithm, *extra_algorithms],
                chunk_bytes=self.chunk_bytes,
                max_bytes=max_bytes,
                length=length,
            )
            # Data is flushed at commit: concurrent commits share one flush.
        except BaseException as exc:
            temp.remove()
            if isinstance(exc, OSError):
                _raise_storage_error(exc)
            raise
        # The temp file stays open (and locked) until commit or discard.
        return Staged(
            result.hexdigest(self.algorithm), result.size, result.digests, temp
        )

    def commit(self, staged: Staged) -> PutResult:
        """Rename into place, or dedupe; either way durable before returning.

        An existing object whose size differs from the upload's is corrupt: the
        upload replaces it (``created`` True). Same-size corruption is not seen
        here (that would mean re-hashing it): ``verify`` and ``VERIFY_READS`` do.
        """
        temp: fstemp.TempFile = staged.handle
        final = self.path_for(staged.hash)
        try:
            if self.fsync:
                # Also on a dedupe hit: its writer's flush may be unfinished or
                # have failed. Group commit shares one flush among callers.
                job = Job(temp, final, staged.size)
                created = self._committer.commit(job)
            else:
                created = not self._flush_existing(final, staged.size, False)
                if created:
                    os.replace(temp.path, final)
        except OSError as exc:
            _raise_storage_error(exc)
        finally:
            temp.remove()  # after the rename only closes (the name is gone)
            staged.done = True
        return PutResult(staged.hash, staged.size, created)

    def _flush_existing(self, final: str, size: int, flush: bool) -> bool:
        """True when an intact-looking ``final`` exists (its data now flushed)."""
        try:
            fd = os.open(final, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            stored = os.fstat(fd).st_size
            if stored != size:
                logger.warning(
                    'replacing %s: it holds %d bytes, its content has %d (corrupt)',
                    final,
                    stored,
                    size,
                )
                return False
            if flush:
                os.fdatasync(fd)  # whoever wrote it, it is durable before we answer
            return True
        finally:
            os.close(fd)

    def adopt(self, fd: int, *, extra_algorithms: Iterable[str] = ()) -> Staged:
        """Stage the open regular file ``fd`` without copying it (nginx's body).

        It is hard-linked into ``tmp/`` (same filesystem; ``/proc/self/fd`` links
        exactly the inode we checked), locked like any temp file, then hashed.

        Raises:
            OSError: it cannot be linked (another filesystem, or
                ``protected_hardlinks`` and not ours): stream it instead.
        """
        path = f'{self._tmp_prefix}{os.getpid()}.{uuid.uuid4().hex}.part'
        # NOTE: os.link follows the /proc magic link only through linkat
        # (src_dir_fd); plain link(2) would try to link the symlink (EXDEV).
        procfd = os.open('/proc/self/fd', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(str(fd), path, src_dir_fd=procfd, follow_symlinks=True)
        finally:
            os.close(procfd)
        temp = fstemp.TempFile(path, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        try:
            fcntl.flock(temp.fd, fcntl.LOCK_EX)
            st = os.fstat(temp.fd)
            if os.stat(path, follow_symlinks=False).st_ino != st.st_ino:
                raise FileNotFoundError(errno.ENOENT, 'swept before locked', path)
            with contextlib.suppress(PermissionError):
                os.fchmod(temp.fd, 0o640)  # nginx wrote it 0600: as a streamed one
            if self.fsync:
                start_writeback(temp.fd)  # the disk writes while we hash
            hashers = {a: new_hasher(a) for a in (self.algorithm, *extra_algorithms)}
            for offset in range(0, st.st_size, self.chunk_bytes):
                data = os.pread(temp.fd, self.chunk_bytes, offset)
                for hasher in hashers.values():
                    hasher.update(data)
        except BaseException:
            temp.remove()
            raise
        digests = {a: h.digest() for a, h in hashers.items()}
        return Staged(digests[self.algorithm].hex(), st.st_size, digests, temp)

    def commit_file(self, path: str, fd: int, digests: dict[str, bytes]) -> PutResult:
        """Commit a flushed file of this store's filesystem in place (no copy).

        It becomes the staged temp: commit renames it into its shard, or unlinks
        it on a dedupe hit.
        """
        staged = Staged(
            digests[self.algorithm].hex(),
            os.fstat(fd).st_size,
            dict(digests),
            fstemp.TempFile(path, os.dup(fd)),
        )
        try:
            return self.commit(staged)
        finally:
            if not staged.done:
                self.discard(staged)

    def discard(self, staged: Staged) -> None:
        staged.handle.remove()
        staged.done = True

    # -- reads ---------------------------------------------------------------
    def stat(self, hex_hash: str) -> ObjectInfo:
        try:
            st = os.stat(self.path_for(hex_hash))
        except FileNotFoundError:
            raise NotFound(f'no object {hex_hash}') from None
        return ObjectInfo(hex_hash, st.st_size, st.st_mtime)

    def get(self, hex_hash: str, *, inline_limit: int = 0) -> Download:
        try:
            fd = os.open(self.path_for(hex_hash), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f'no object {hex_hash}') from None
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        info = ObjectInfo(hex_hash, st.st_size, st.st_mtime)
        if st.st_size <= inline_limit:
            return Download(info, data=_read_all(fd, st.st_size))  # closes fd
        return Download(info, file=open(fd, 'rb'))

    def open(self, hex_hash: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        try:
            f = open(self.path_for(hex_hash), 'rb')  # noqa: SIM115 - handed to the server
        except FileNotFoundError:
            raise NotFound(f'no object {hex_hash}') from None
        if start:
            f.seek(start)
        return f

    def delete(self, hex_hash: str) -> None:
        try:
            os.unlink(self.path_for(hex_hash))
        except FileNotFoundError:
            raise NotFound(f'no object {hex_hash}') from None

    def iter_hashes(self, after: str = '') -> Iterator[str]:
        for shard in SHARDS:
            if after and shard < after[:2]:
                continue
            try:
                names = sorted(os.listdir(self.root / shard))
            except FileNotFoundError:
                continue
            for name in names:
                if name > after and self._is_object_name(shard, name):
                    yield name

    def _is_object_name(self, shard: str, name: str) -> bool:
        return name.startswith(shard) and is_object_name(name, self.hex_length)

    # -- maintenance -----------------------------------------------------------
    def sweep_temp(self, max_age: float) -> int:
        """Remove temp files older than ``max_age`` seconds (0 = any age).

        Files a live writer holds locked (any process) are never removed.
        """
        removed = fstemp.sweep(str(self.tmp), max_age)
        bodies = self.tmp / NGINX_BODY_DIR
        if bodies.is_dir():
            # NOTE: nginx holds no lock on a body it is receiving: by age only,
            # never younger than NGINX_BODY_MIN_AGE (a start-up sweep passes 0).
            removed += fstemp.sweep(str(bodies), max(max_age, NGINX_BODY_MIN_AGE))
        if removed:
            logger.info('removed %d stale temp file(s) from %s', removed, self.tmp)
        return removed

    def temp_names(self) -> list[str]:
        # nginx's body directory (--body-offload) is no upload of ours.
        return sorted(n for n in os.listdir(self.tmp) if n != NGINX_BODY_DIR)

    def space(self) -> fscheck.Space:
        return fscheck.space(self.root, self.quarantine_dir)

    def layout_problems(self) -> Iterator[fscheck.LayoutProblem]:
        return fscheck.layout_problems(self.root, self.algorithm, self.hex_length)

    def quarantine_entry(self, problem: fscheck.LayoutProblem) -> str:
        return str(fscheck.quarantine_entry(self.quarantine_dir, Path(problem.where)))

    def ready_checks(self) -> list[ReadyCheck]:
        checks = [
            ReadyCheck(
                'writable', os.access(self.tmp, os.W_OK | os.X_OK), str(self.tmp)
            )
        ]
        st = os.statvfs(self.root)
        free_bytes = st.f_bavail * st.f_frsize
        checks.append(
            ReadyCheck(
                'free_bytes',
                free_bytes >= self.min_free_bytes,
                f'{free_bytes} free, need {self.min_free_bytes}',
            )
        )
        # Filesystems without inode accounting (btrfs, some overlays) report 0 files.
        inodes_ok = st.f_files == 0 or st.f_favail >= self.min_free_inodes
        checks.append(
            ReadyCheck(
                'free_inodes',
                inodes_ok,
                f'{st.f_favail} free, need {self.min_free_inodes}',
            )
        )
        return checks

    def quarantine(self, hex_hash: str) -> str:
        target = quarantine_target(self.quarantine_dir, hex_hash)
        try:
            os.rename(self.path_for(hex_hash), target)  # same filesystem: atomic
        except FileNotFoundError:
            raise NotFound(f'no object {hex_hash}') from None
        return target

    def quarantine_checked(self, hex_hash: str, checked: IO[bytes]) -> str | None:
        """Quarantine the very file ``checked`` reads, never a replacement."""
        path = self.path_for(hex_hash)
        where = quarantine_if_same(path, checked.fileno(), self.quarantine_dir)
        if self.fsync:
            self._syncer.sync(os.path.dirname(path))  # the move (or put-back) too
        return where


def _read_all(fd: int, size: int) -> bytes:
    try:
        parts, left = [], size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b''.join(parts)
    finally:
        os.close(fd)


def _raise_storage_error(exc: OSError) -> NoReturn:
    if exc.errno in _FULL:
        raise InsufficientStorage(
            f'the store is full: {os.strerror(exc.errno or 0)}'
        ) from exc
    raise exc
