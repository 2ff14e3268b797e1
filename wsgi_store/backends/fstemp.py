"""Temp files that any sweeper in any process can tell apart from live uploads.

NOTE: a writer holds an exclusive ``flock`` on its temp file for the file's whole
life (from creation until it is renamed into its shard or removed). Every
sweeper (the start-up sweep of any instance, ``gc``, ``sweep_temp``) takes a
non-blocking exclusive lock first and skips what it cannot lock, so two
instances on one store, or a ``gc`` while uploads run, never remove a live
upload. A lock dies with its process, so a crashed writer's file is swept.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import time

logger = logging.getLogger(__name__)

_TEMP_IDS = itertools.count()  # next() is atomic under the GIL
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_PROBE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class TempFile:
    """A temp file and its open, locked descriptor (``Staged.handle`` of fs)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        """Close the descriptor (releasing the lock); idempotent."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def remove(self) -> None:
        """Unlink the file (while still holding the lock), then close; idempotent."""
        with contextlib.suppress(FileNotFoundError):
            if self.fd >= 0:
                os.unlink(self.path)
        self.close()


def create_locked(prefix: str, suffix: str = '.part') -> TempFile:
    """Create ``<prefix><pid>.<n><suffix>`` with ``O_EXCL`` and lock it.

    Raises:
        OSError: the file could not be created (full disk, permissions...).
    """
    for _ in range(100):
        path = f'{prefix}{os.getpid()}.{next(_TEMP_IDS)}{suffix}'
        try:
            fd = os.open(path, _CREATE, 0o640)
        except FileExistsError:
            continue  # left by an earlier process with the same pid
        try:
            # Blocking: a sweeper holds an unlocked file only for a moment.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _is_at(fd, path):
                return TempFile(path, fd)
        except BaseException:
            os.close(fd)
            raise
        # A sweeper removed it between our open and our lock: take a new name.
        os.close(fd)
    raise RuntimeError(f'cannot create a temp file at {prefix}*')


def sweep(directory: str, max_age: float = 0.0) -> int:
    """Remove unlocked temp files older than ``max_age`` seconds (0: any age).

    Files a live writer holds are skipped whatever their age; so are
    directories and symlinks (only regular files are ours).
    """
    removed = 0
    limit = time.time() - max_age
    for entry in os.scandir(directory):
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if max_age and entry.stat(follow_symlinks=False).st_mtime > limit:
                continue
        except FileNotFoundError:
            continue
        if remove_if_unlocked(entry.path):
            removed += 1
    return removed


def remove_if_unlocked(path: str) -> bool:
    """Unlink ``path`` unless a writer holds its lock; True when removed."""
    try:
        fd = os.open(path, _PROBE)
    except (FileNotFoundError, OSError):
        return False  # gone, a symlink swapped in, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live upload
        # The name may have moved on (renamed into a shard) since we opened it.
        if not _is_at(fd, path):
            return False
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _is_at(fd: int, path: str) -> bool:
    """True when ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
