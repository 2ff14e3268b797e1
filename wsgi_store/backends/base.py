"""The backend contract: what every storage backend promises.

Immutable objects named by the hex digest of their bytes. Writes are two-phase:
stage a body (streamed, hashed, invisible), check it, then make it visible:

    staged = backend.stage(body, ...)     # temp file / temp key, hashed
    result = backend.commit(staged)       # atomic, durable; dedupes
    backend.discard(staged)               # on any failure; idempotent

:meth:`Backend.put` does all three with the digest checks. Backends raise only
:mod:`wsgi_store.errors` (``NotFound``, ``BackendUnavailable``...), never HTTP.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from wsgi_store.errors import DigestMismatch, NotFound
from wsgi_store.hashing import Expectation, Readable, new_hasher


@dataclass(frozen=True)
class PutResult:
    """What an upload produced."""

    hash: str
    size: int
    created: bool  # False when the content was already stored


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of a stored object."""

    hash: str
    size: int
    mtime: float = 0.0


@dataclass
class Download:
    """An object opened for a GET: its metadata and, where cheap, its bytes.

    ``data`` holds a small object read whole; ``file`` a real file positioned at
    0 (so the server can ``sendfile`` it). When both are None the caller uses
    :meth:`Backend.open` with the range it needs.
    """

    info: ObjectInfo
    data: bytes | None = None
    file: IO[bytes] | None = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class Staged:
    """A fully received body waiting to be committed or discarded."""

    hash: str
    size: int
    digests: dict[str, bytes]
    handle: Any = None  # backend-private: temp path, temp key, ...
    done: bool = field(default=False)


@dataclass(frozen=True)
class ReadyCheck:
    """One readiness check's outcome, for ``/readyz``."""

    name: str
    ok: bool
    detail: str = ''


@dataclass(frozen=True)
class Space:
    """What a store has left, for ``stats`` (None: the backend cannot tell)."""

    free_bytes: int | None = None
    free_inodes: int | None = None
    quarantined: int | None = None


@dataclass(frozen=True)
class LayoutProblem:
    """An entry in the store that is not an object (for ``verify``).

    ``name`` is the entry's name: :meth:`Backend.iter_hashes` may still yield it
    when it has a hash's length.
    """

    where: str
    name: str
    reason: str


class Backend(abc.ABC):
    """Abstract storage backend. See the module docstring for the contract."""

    algorithm: str
    name: str = 'abstract'

    #: ``exists`` is a network round trip: callers checking many hashes at once
    #: run the lookups concurrently. A local lookup is cheaper than a thread.
    remote_lookups: bool = False

    #: Every temporary upload in use is recognisable as live by any sweeper in
    #: any process (its writer holds a lock), so the start-up sweep may remove
    #: all the others whatever their age. Without it (S3: temporary keys of other
    #: workers and nodes look alike), only ``gc`` removes them, by age.
    live_temps_locked: bool = False

    # -- writes ------------------------------------------------------------
    @abc.abstractmethod
    def stage(
        self,
        source: Readable,
        *,
        extra_algorithms: Iterable[str] = (),
        length: int | None = None,
        max_bytes: int = 0,
    ) -> Staged:
        """Stream ``source`` to a private temporary place, hashing it.

        Raises ``TooLarge``, ``IncompleteBody``, ``InsufficientStorage``; leaves
        nothing behind when it raises.
        """

    @abc.abstractmethod
    def commit(self, staged: Staged) -> PutResult:
        """Make a staged body visible under its hash, durably and atomically.

        If the object already exists the staged copy is dropped and
        ``created`` is False. The staged object is consumed either way.
        """

    @abc.abstractmethod
    def discard(self, staged: Staged) -> None:
        """Remove a staged body. Idempotent; never raises for a missing temp."""

    def put(
        self,
        source: Readable,
        *,
        expect: Sequence[Expectation] = (),
        length: int | None = None,
        max_bytes: int = 0,
    ) -> PutResult:
        """Stage, check the expected digests, commit; discard on any failure."""
        extra = [e.algorithm for e in expect if e.algorithm != self.algorithm]
        staged = self.stage(
            source, extra_algorithms=extra, length=length, max_bytes=max_bytes
        )
        try:
            check_expectations(staged, expect, self.algorithm)
            return self.commit(staged)
        finally:
            if not staged.done:
                self.discard(staged)

    def commit_file(self, path: str, fd: int, digests: dict[str, bytes]) -> PutResult:
        """Make a whole, hashed file (``fd`` open on ``path``) an object.

        Streams it through :meth:`put`; the filesystem commits it in place.
        """
        with open(path, 'rb') as f:
            return self.put(f, length=os.fstat(fd).st_size)

    # -- reads ---------------------------------------------------------------
    @abc.abstractmethod
    def stat(self, hex_hash: str) -> ObjectInfo:
        """Size and time of an object; ``NotFound`` when absent."""

    def get(self, hex_hash: str, *, inline_limit: int = 0) -> Download:
        """Open an object for a GET; ``NotFound`` when absent.

        Backends may return the bytes of objects up to ``inline_limit`` bytes in
        ``data`` (cheaper than streaming them) or a real file in ``file``.
        """
        return Download(self.stat(hex_hash))

    @abc.abstractmethod
    def open(self, hex_hash: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        """Open an object for reading from ``start`` to ``end`` (exclusive).

        The filesystem backend returns a real file positioned at ``start``, so the
        server can ``sendfile`` it. ``NotFound`` when absent.
        """

    def exists(self, hex_hash: str) -> bool:
        """True when the object is stored."""
        try:
            self.stat(hex_hash)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def delete(self, hex_hash: str) -> None:
        """Remove an object; ``NotFound`` when absent."""

    @abc.abstractmethod
    def iter_hashes(self, after: str = '') -> Iterator[str]:
        """Every stored hash greater than ``after``, in ascending order."""

    # -- maintenance -----------------------------------------------------------
    def sweep_temp(self, max_age: float) -> int:
        """Remove temporary uploads idle for over ``max_age`` seconds; return count.

        NOTE: ``max_age=0`` removes every upload not known to be live: safe on a
        backend with :attr:`live_temps_locked`, elsewhere only while nothing else
        writes to the store (tests). The service sweeps with
        :meth:`sweep_before_start` and ``gc`` with the configured age.
        """
        return 0

    def sweep_before_start(self) -> int:
        """The start-up sweep, in gunicorn's master before the workers fork.

        Removes every temporary upload no live writer holds when live ones are
        recognisable (:attr:`live_temps_locked`), else nothing.
        """
        return self.sweep_temp(0) if self.live_temps_locked else 0

    def space(self) -> Space:
        """Free bytes and inodes, and the number of quarantined objects."""
        return Space()

    def layout_problems(self) -> Iterator[LayoutProblem]:
        """Entries where objects live that are not objects (none by default)."""
        return iter(())

    def quarantine_entry(self, problem: LayoutProblem) -> str:
        """Move a non-object aside (never delete it); return where it went."""
        raise NotImplementedError

    def temp_names(self) -> list[str]:
        """Names of the temporary uploads that exist now (staged, in flight, or
        left by a crash). Used by gc, stats and tests."""
        return []

    def ready_checks(self) -> list[ReadyCheck]:
        """Checks for ``/readyz`` (writable, free space, endpoint reachable)."""
        return []

    def quarantine(self, hex_hash: str) -> str:
        """Move a corrupt object aside (never delete it); return where it went."""
        raise NotImplementedError

    def quarantine_checked(self, hex_hash: str, checked: IO[bytes]) -> str | None:
        """Quarantine the object that ``checked`` (from :meth:`open`) was reading.

        Only if ``hex_hash`` still names that object: a client may have deleted
        it and uploaded the right bytes since. Returns where it went, or None
        when nothing was moved. This default re-hashes by name just before
        moving (a small window remains); the filesystem backend compares inodes.
        """
        try:
            with self.open(hex_hash) as f:
                if hash_stream(f, self.algorithm)[0] == hex_hash:
                    return None
            return self.quarantine(hex_hash)
        except NotFound:
            return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and files."""


def check_expectations(
    staged: Staged, expect: Sequence[Expectation], algorithm: str
) -> None:
    """Raise ``DigestMismatch`` when a staged body differs from an announced digest."""
    for exp in expect:
        got = staged.digests.get(exp.algorithm)
        if got is not None and got != exp.digest:
            name = 'file_hash' if exp.algorithm == algorithm else exp.algorithm
            raise DigestMismatch(
                f'the body does not match the {name} given in {exp.source}',
                expected=exp.digest.hex(),
                actual=got.hex(),
                algorithm=exp.algorithm,
            )


def hash_stream(f: IO[bytes], algorithm: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """Hash an open object to its end; return (hexdigest, size)."""
    hasher = new_hasher(algorithm)
    size = 0
    while data := f.read(chunk):
        hasher.update(data)
        size += len(data)
    return hasher.hexdigest(), size
