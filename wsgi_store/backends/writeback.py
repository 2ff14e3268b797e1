"""Start disk writeback while an upload is still arriving.

Without it, a large upload's pages stay dirty until the final ``fdatasync``,
which then waits for the whole file. ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
on each completed window queues it for writeback right away, so receiving,
hashing and writing overlap and the final flush is short. Linux-only; elsewhere
(or if libc lacks it) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

WINDOW = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load()
_WAIT_BEFORE, _WAIT_AFTER = 1, 4


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
        func = libc.syncfs  # Python 3.11 has no os.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_syncfs = _load_syncfs()
HAVE_SYNCFS = _syncfs is not None and _sync_file_range is not None


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding ``fd``: data, metadata, device cache.

    Linux >= 5.8 reports writeback errors of the filesystem seen since ``fd``
    was opened. The GIL is released during the call (ctypes).
    """
    assert _syncfs is not None
    if _syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f'syncfs: {os.strerror(err)}')


def start_writeback(fd: int) -> None:
    """Queue the file's dirty pages for writeback (no wait, errors ignored)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # type: ignore[misc]


def wait_written(fd: int) -> None:
    """Wait until the file's data has been written; raise its writeback error.

    ``sync_file_range`` with both WAIT flags checks (and consumes) the writeback
    error recorded for this open file since it was opened, without a device
    flush: used after a ``syncfs`` so each upload learns about its own data.
    """
    assert _sync_file_range is not None
    flags = _WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _WAIT_AFTER
    if _sync_file_range(fd, 0, 0, flags) != 0:  # type: ignore[misc]
        err = ctypes.get_errno()
        raise OSError(err, f'sync_file_range: {os.strerror(err)}')


class WritebackWriter:
    """``write(view)`` for a file descriptor that starts writeback per window."""

    def __init__(self, fd: int, eager: bool) -> None:
        self.fd = fd
        self.eager = eager and _sync_file_range is not None
        self.offset = 0
        self.flushed = 0

    def __call__(self, view: memoryview) -> None:
        fd = self.fd
        while view:
            written = os.write(fd, view)
            view = view[written:]
            self.offset += written
        if self.eager and self.offset - self.flushed >= WINDOW:
            # Errors here are advisory: the final fdatasync reports real ones.
            _sync_file_range(
                fd,
                self.flushed,
                self.offset - self.flushed,  # type: ignore[misc]
                _SYNC_FILE_RANGE_WRITE,
            )
            self.flushed = self.offset
