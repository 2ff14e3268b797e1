"""Group commit of uploads: one device flush shared by concurrent uploads.

An upload is durable once its data, its rename into a shard and that shard's
directory entry are on stable storage; it is never renamed before its data is
(so every name in the store holds its whole content, even after a crash).

Callers of :meth:`GroupCommitter.commit` queue a job; one of them (the leader)
runs rounds while the others wait, with the lock released during I/O:

* a job alone (nothing else queued or waiting): the classic sequence,
  ``fdatasync(temp)``, rename (or dedupe), ``fsync(shard dir)``;
* otherwise one ``syncfs`` per round: it makes durable the data of the jobs
  queued since the last round (then checked one by one for their own writeback
  errors and renamed) *and* the renames of the previous round (answered now).
  A job therefore spans two rounds, but each round serves two generations, so
  steady state is one flush per round, however many uploads are in it.

``syncfs`` also writes out every other dirty page of that filesystem (access
logs, metrics files, other programs): the store belongs on a filesystem of its
own. Mode ``files`` batches per-file flushes instead (writeback of every file
of the round started together, one ``fdatasync`` each, one ``fsync`` per shard
directory): never coupled to other writers, but on most disks each of those
calls is a device flush. ``off``: the classic sequence for every job.

NOTE: a dedupe hit is checked after a flush and answered only after the next
one: the object may have been renamed by another worker whose flush has not
happened (``syncfs`` flushes the whole filesystem, every writer's work).
Each process has its own committer; workers do not share rounds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from wsgi_store.backends import dirsync, writeback
from wsgi_store.backends.fstemp import TempFile

MODES = ('syncfs', 'files', 'off')
# (final path, size, flush it?) -> True when an intact-looking object exists
Existing = Callable[[str, int, bool], bool]


@dataclass(eq=False)
class Job:
    """One staged upload on its way into the store."""

    temp: TempFile
    final: str
    size: int
    created: bool = False
    done: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """Batch the flushes of concurrent commits in one process."""

    def __init__(self, root: str, existing: Existing, *, mode: str = 'syncfs') -> None:
        if mode not in MODES:
            raise ValueError(f'group commit mode must be one of {MODES}, not {mode!r}')
        self.root = root
        self._existing = existing
        self.mode = mode if writeback.HAVE_SYNCFS else 'off'
        self._cond = threading.Condition()
        self._queue: list[Job] = []  # staged, data not known to be durable
        self._renamed: list[Job] = []  # renamed or dedupe-checked, awaiting a flush
        self._leader = False
        self._fd = -1
        self._fd_pid = 0
        self.rounds = 0  # flushes issued by batch rounds (for tests and metrics)

    def commit(self, job: Job) -> bool:
        """Return ``created`` once ``job`` is durable; raise its error."""
        with self._cond:
            self._queue.append(job)
            while not job.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                try:
                    self._round()
                finally:
                    self._leader = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.created

    def _round(self) -> None:
        # Called with the condition held; releases it while doing I/O.
        fresh, self._queue = self._queue, []
        waiting, self._renamed = self._renamed, []
        renamed: list[Job] = []
        finished: list[Job] = []
        self._cond.release()
        try:
            if self.mode == 'off' or (len(fresh) == 1 and not waiting):
                for job in fresh:
                    self._classic(job)
                finished = fresh
            else:
                finished, renamed = self._batch(fresh, waiting)
        except BaseException as exc:  # not an OSError: fail everyone, never hang
            finished = [*fresh, *waiting]
            for job in finished:
                job.error = job.error or exc
            raise
        finally:
            self._cond.acquire()
            self._renamed.extend(renamed)
            for job in finished:
                job.done = True

    def _classic(self, job: Job) -> None:
        try:
            os.fdatasync(job.temp.fd)
            job.created = not self._existing(job.final, job.size, True)
            if job.created:
                os.replace(job.temp.path, job.final)
            dirsync.fsync_dir(os.path.dirname(job.final))
        except OSError as exc:
            job.error = exc

    def _batch(
        self, fresh: list[Job], waiting: list[Job]
    ) -> tuple[list[Job], list[Job]]:
        """One flush: answers ``waiting``, renames ``fresh`` (to be answered next)."""
        try:
            if self.mode == 'files':
                self._flush_files(fresh, waiting)
            else:
                writeback.syncfs(self._root_fd())
            self.rounds += 1
        except OSError as exc:
            for job in (*fresh, *waiting):
                job.error = exc
            return [*fresh, *waiting], []
        finished, renamed = list(waiting), []
        for job in fresh:
            try:
                writeback.wait_written(job.temp.fd)  # this upload's own write errors
                # 'files' flushes a dedupe hit's object itself; syncfs does next.
                flush = self.mode == 'files'
                job.created = not self._existing(job.final, job.size, flush)
                if job.created:
                    os.replace(job.temp.path, job.final)
            except OSError as exc:
                job.error = exc
                finished.append(job)
            else:
                renamed.append(job)
        return finished, renamed

    def _flush_files(self, fresh: list[Job], waiting: list[Job]) -> None:
        # Mode 'files': the data of the fresh jobs, the entries of the waiting.
        for job in fresh:
            writeback.start_writeback(job.temp.fd)
        for job in fresh:
            os.fdatasync(job.temp.fd)
        for path in sorted({os.path.dirname(job.final) for job in waiting}):
            dirsync.fsync_dir(path)

    def _root_fd(self) -> int:
        # Kept open: syncfs reports writeback errors seen since its fd was opened.
        # Reopened in a forked child (the parent's fd would be shared).
        if self._fd_pid != os.getpid():
            self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._fd_pid = os.getpid()
        return self._fd
