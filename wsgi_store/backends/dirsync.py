"""Group commit for directory fsyncs.

A rename is durable only once its directory is fsynced. Threads that renamed a
file call :meth:`DirSyncer.sync`; one of them (the leader) fsyncs every directory
dirtied so far while the others wait, so one flush covers many renames and each
caller still returns only after its own rename is on disk. A dedupe hit (the
object was already there, maybe renamed a moment ago by another thread whose
flush is unfinished or failed) syncs through here too before it is answered.
Each process has its own syncer: callers in other workers flush for themselves.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class DirSyncer:
    """Batch directory fsyncs across concurrent writers in one process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._dirty: set[str] = set()
        self._requested = 0  # tickets handed out
        self._synced = 0  # every ticket <= this is durable
        self._leader = False

    def sync(self, directory: Path | str) -> None:
        """Return once ``directory`` has been fsynced after this call began."""
        with self._cond:
            self._dirty.add(os.fspath(directory))
            self._requested += 1
            ticket = self._requested
            while self._synced < ticket:
                if self._leader:
                    self._cond.wait()
                    continue
                self._lead()

    def _lead(self) -> None:
        # Called with the condition held; releases it while flushing.
        self._leader = True
        target, dirty = self._requested, self._dirty
        self._dirty = set()
        self._cond.release()
        try:
            for path in sorted(dirty):
                fsync_dir(path)
        except BaseException:
            self._cond.acquire()
            self._dirty |= dirty  # let the next leader retry them
            self._leader = False
            self._cond.notify_all()
            raise
        self._cond.acquire()
        self._synced = max(self._synced, target)
        self._leader = False
        self._cond.notify_all()


def fsync_dir(path: Path | str) -> None:
    """fsync a directory so that renames into it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
