"""Upload state on the filesystem: ``STORE/uploads/<id>/``.

``info.json``
    What the creating request said (length, metadata, owner, concatenation,
    expected hashes) and, once complete, the object. Written whole to a temp
    name, flushed, renamed, directory flushed: never seen half-written.
``data``
    The bytes so far; after a crash mid-``PATCH`` the next writer cuts the tail.
``offset``
    The committed offset: a fixed-width decimal record rewritten in place (one
    sector) and flushed after the data file was. An acknowledged
    ``Upload-Offset: N`` means both flushes finished, so the N bytes survive
    kill -9 and power loss. Its mtime is the upload's last activity: the upload
    expires ``expiry`` seconds later.

NOTE: a writer holds an exclusive ``flock`` on ``data`` for as long as it
writes (any process, any worker); terminating and the expiry sweep take the
lock without blocking and skip an upload they cannot lock, so a live ``PATCH``
is never swept. A lock dies with its process, so kill -9 frees it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from wsgi_store.backends.dirsync import DirSyncer
from wsgi_store.errors import NotFound
from wsgi_store.tus.headers import Gone, Locked, is_upload_id

logger = logging.getLogger(__name__)

INFO, DATA, OFFSET = 'info.json', 'data', 'offset'
EXPIRED = 'expired'  # marker: the service has seen this upload expire (metrics)
_CREATE_ONCE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_RECORD = 21  # 20 digits and a newline
LOCK_WAIT = 5.0  # seconds a writer waits for an earlier PATCH to let go


@dataclass
class UploadInfo:
    """What ``info.json`` holds."""

    id: str
    owner: str  # sha256 of the creating bearer token ('' without tokens)
    length: int | None  # None while deferred (Upload-Defer-Length: 1)
    metadata: dict[str, str | None] = field(default_factory=dict)
    concat: str | None = None  # 'partial', 'final' or None
    parts: list[str] = field(default_factory=list)  # a final upload's partials
    expect: dict[str, str] = field(default_factory=dict)  # algorithm -> hex
    created: float = 0.0
    pending_hash: str | None = None  # computed, about to be committed
    result: dict | None = None  # {'hash', 'size', 'created'} once stored

    @classmethod
    def from_json(cls, text: str) -> UploadInfo:
        return cls(**json.loads(text))


class UploadStore:
    """Create, find, write, terminate and expire uploads under one directory."""

    concatenation = True  # partial uploads' data files can be concatenated

    def __init__(self, root: str, expiry: float, *, fsync: bool = True) -> None:
        self.root = root
        self.expiry = expiry
        self.fsync = fsync
        self._syncer = DirSyncer()

    def path(self, upload_id: str, name: str = '') -> str:
        return os.path.join(self.root, upload_id, name)

    # -- create / read ---------------------------------------------------------
    def create(self, info: UploadInfo) -> None:
        """Make the upload's directory durable with an empty data file."""
        directory = self.path(info.id)
        os.makedirs(self.root, mode=0o750, exist_ok=True)
        os.mkdir(directory, 0o750)
        fd = os.open(self.path(info.id, DATA), os.O_WRONLY | os.O_CREAT, 0o640)
        os.close(fd)
        fd = os.open(self.path(info.id, OFFSET), os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            self._write_offset(fd, 0)
        finally:
            os.close(fd)
        self.save(info)  # flushes the upload directory
        if self.fsync:
            self._syncer.sync(self.root)

    def load(self, upload_id: str, owner: str) -> UploadInfo:
        """The upload's info; ``NotFound`` when unknown or another token's."""
        if not is_upload_id(upload_id):
            raise NotFound('no such upload')
        try:
            with open(self.path(upload_id, INFO), encoding='utf-8') as f:
                info = UploadInfo.from_json(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound('no such upload') from None
        if not hmac.compare_digest(info.owner, owner):
            raise NotFound('no such upload')  # never say it exists
        return info

    def load_live(self, upload_id: str, owner: str) -> UploadInfo:
        """Like :meth:`load`, but 410 once the upload has expired."""
        return check_live(self, self.load(upload_id, owner), upload_id)

    def _mark_expired(self, upload_id: str) -> bool:
        """True for the first request (any process) to find the upload expired."""
        try:
            os.close(os.open(self.path(upload_id, EXPIRED), _CREATE_ONCE, 0o640))
        except (FileExistsError, FileNotFoundError, NotADirectoryError):
            return False
        return True

    def save(self, info: UploadInfo) -> None:
        """Replace ``info.json`` atomically and durably."""
        tmp = self.path(info.id, f'.{INFO}.{os.getpid()}.{threading.get_ident()}.tmp')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, json.dumps(asdict(info), separators=(',', ':')).encode())
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path(info.id, INFO))
        if self.fsync:
            self._syncer.sync(self.path(info.id))

    def has_data(self, upload_id: str) -> bool:
        """Whether the bytes still wait to become an object (not committed)."""
        return os.path.exists(self.path(upload_id, DATA))

    def offset(self, upload_id: str) -> int:
        """The committed offset (bytes acknowledged so far)."""
        try:
            with open(self.path(upload_id, OFFSET), 'rb') as f:
                return int(f.read(_RECORD) or b'0')
        except FileNotFoundError:
            raise NotFound('no such upload') from None

    def expires(self, upload_id: str) -> float:
        """When the upload expires: its last activity plus the expiry."""
        try:
            return os.stat(self.path(upload_id, OFFSET)).st_mtime + self.expiry
        except FileNotFoundError:
            raise NotFound('no such upload') from None

    # -- write -------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[Writer]:
        """The upload's data file, locked, cut back to the committed offset."""
        try:
            fd = os.open(self.path(upload_id, DATA), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound('no such upload') from None
        try:
            _lock(fd, LOCK_WAIT)
            if not os.path.exists(self.path(upload_id, INFO)):
                raise NotFound('no such upload')  # terminated while we waited
            writer = Writer(self, upload_id, fd, self.offset(upload_id))
            os.ftruncate(fd, writer.offset)  # drop bytes never acknowledged
            yield writer
        finally:
            os.close(fd)

    def _write_offset(self, fd: int, offset: int) -> None:
        os.pwrite(fd, b'%020d\n' % offset, 0)
        if self.fsync:
            os.fdatasync(fd)

    # -- remove ------------------------------------------------------------------
    def remove(
        self, upload_id: str, *, wait: float | None = None, held: bool = False
    ) -> bool:
        """Delete an upload unless a writer holds it past ``wait``; True if removed.

        ``held``: the caller already holds the upload's lock (its own writer).
        ``wait``: seconds to wait for a writer (:data:`LOCK_WAIT` when None).
        """
        wait = LOCK_WAIT if wait is None else wait
        try:
            fd = -1
            if not held:
                fd = os.open(self.path(upload_id, DATA), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1  # completed (the data became an object) or half-removed
        try:
            if fd >= 0:
                try:
                    _lock(fd, wait)
                except Locked:
                    return False
            # info.json first: a reader that finds no info finds no upload.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(upload_id, INFO))
            shutil.rmtree(self.path(upload_id), ignore_errors=True)
            if self.fsync:
                self._syncer.sync(self.root)
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    def ids(self) -> list[str]:
        """Every upload id present (live, complete or expired)."""
        try:
            return sorted(n for n in os.listdir(self.root) if is_upload_id(n))
        except FileNotFoundError:
            return []

    def expired_ids(self, now: float | None = None) -> list[str]:
        """Uploads whose expiry has passed."""
        now = time.time() if now is None else now
        found = []
        for upload_id in self.ids():
            try:
                if self.expires(upload_id) <= now:
                    found.append(upload_id)
            except NotFound:
                found.append(upload_id)  # a directory without state: debris
        return found

    def sweep(self, now: float | None = None) -> int:
        """Remove expired uploads that no writer holds; return how many."""
        removed = sum(self.remove(i, wait=0) for i in self.expired_ids(now))
        if removed:
            logger.info('removed %d expired upload(s) from %s', removed, self.root)
        return removed


def check_live(store: Any, info: UploadInfo, upload_id: str) -> UploadInfo:
    """``info``, or :class:`Gone` once expired (``first_seen``: once, any process)."""
    expires = store.expires(upload_id)
    if expires <= time.time():
        gone = Gone(f'the upload expired at {time.ctime(expires)}')
        gone.first_seen = store._mark_expired(upload_id)
        raise gone
    return info


class Writer:
    """Appends to one locked upload and commits offsets."""

    def __init__(self, store: UploadStore, upload_id: str, fd: int, offset: int):
        self.store = store
        self.upload_id = upload_id
        self.fd = fd
        self.offset = offset  # committed
        self.written = 0  # appended since the last commit

    def write(self, view: memoryview) -> None:
        while view:
            done = os.pwrite(self.fd, view, self.offset + self.written)
            view = view[done:]
            self.written += done

    def rollback(self) -> None:
        """Forget what was appended since the last commit."""
        os.ftruncate(self.fd, self.offset)
        self.written = 0

    def commit(self) -> int:
        """Flush the data, then the offset; return the new offset."""
        if self.written:
            if self.store.fsync:
                os.fdatasync(self.fd)
            self.offset += self.written
            self.written = 0
        self._touch()
        return self.offset

    def _touch(self) -> None:
        fd = os.open(self.store.path(self.upload_id, OFFSET), os.O_WRONLY)
        try:
            self.store._write_offset(fd, self.offset)
        finally:
            os.close(fd)


def _lock(fd: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise Locked('another request is writing to this upload') from None
            time.sleep(0.05)
