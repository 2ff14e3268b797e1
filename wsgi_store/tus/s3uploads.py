"""Upload state in the object store, for the S3 backend: any node can resume.

Under ``PREFIX/uploads/<id>/``:

``state.json``
    The upload's :class:`~.sessions.UploadInfo` plus where its bytes are: the
    multipart upload (id and the parts sent, each at least 5 MiB), the key of
    the *pending tail* and the committed offset. Rewritten whole (PutObject is
    atomic) once the bytes it names are stored, so an acknowledged
    ``Upload-Offset: N`` means S3 holds the N bytes.
``tail-<offset>-<random>``
    Bytes after the last part, fewer than a part: S3 refuses parts under 5 MiB
    (but the last), so small ``PATCH`` requests collect here, *in the store*,
    never in a worker. A writer starts from the tail, sends a part whenever it
    holds ``part_bytes``, and leaves the rest as a new tail; the old one is
    deleted once the new state names the new one.
``lock``
    Created with ``If-None-Match: *`` (one writer at a time across nodes),
    refreshed while a body streams, deleted at the end. A lock older than
    :data:`LOCK_TTL` seconds (its writer died) is broken.
``data``
    The multipart upload's key; at completion the parts (and the tail as the
    last part) are assembled there, hashed (re-read when the upload arrived in
    several requests: hash state cannot be saved) and committed through the
    backend's own commit (server-side copy to the object's key, temp deleted).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from botocore.exceptions import ClientError

from ..backends.base import PutResult, Staged
from ..backends.s3 import S3Backend
from ..backends.s3_io import _Chunks, _Upload
from ..digests import new_hasher
from ..errors import NotFound
from .headers import Gone, Locked, is_upload_id
from .sessions import LOCK_WAIT, UploadInfo

logger = logging.getLogger(__name__)

LOCK_TTL = 30.0  # seconds without a refresh after which a lock is stale
REFRESH = 10.0  # a writer refreshes its lock at least this often while it writes
READ_CHUNK = 1 << 20


class S3UploadStore:
    """The :class:`~.sessions.UploadStore` interface on an S3 bucket."""

    concatenation = False  # not on S3 (yet): creating a partial upload is a 400

    def __init__(self, backend: S3Backend, expiry: float) -> None:
        self.backend = backend
        self.client = backend.client
        self.bucket = backend.bucket
        self.root = f'{backend.prefix}uploads/'
        self.expiry = expiry
        self.part_bytes = backend.part_bytes

    def key(self, upload_id: str, name: str) -> str:
        return f'{self.root}{upload_id}/{name}'

    # -- state -------------------------------------------------------------------
    def _get(self, key: str) -> bytes | None:
        try:
            reply = self.client.use().get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get('Error', {}).get('Code') in ('NoSuchKey', '404'):
                return None
            raise
        return reply['Body'].read()

    def _put(self, key: str, body: bytes, **extra: Any) -> None:
        with self.client.errors('write upload state'):
            self.client.use().put_object(
                Bucket=self.bucket, Key=key, Body=body, **extra
            )

    def _delete(self, key: str) -> None:
        with self.client.errors('delete upload state'):
            self.client.use().delete_object(Bucket=self.bucket, Key=key)

    def state(self, upload_id: str) -> dict[str, Any]:
        if not is_upload_id(upload_id):
            raise NotFound('no such upload')
        with self.client.errors('read upload state'):
            raw = self._get(self.key(upload_id, 'state.json'))
        if raw is None:
            raise NotFound('no such upload')
        state: dict[str, Any] = json.loads(raw)
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        state['updated'] = time.time()
        body = json.dumps(state, separators=(',', ':')).encode()
        self._put(self.key(state['info']['id'], 'state.json'), body)

    # -- the UploadStore interface ------------------------------------------------
    def create(self, info: UploadInfo) -> None:
        self.write_state(
            {'info': asdict(info), 'offset': 0, 'mpu': '', 'parts': [], 'tail': ''}
        )

    def load(self, upload_id: str, owner: str) -> UploadInfo:
        info = UploadInfo(**self.state(upload_id)['info'])
        if not hmac.compare_digest(info.owner, owner):
            raise NotFound('no such upload')
        return info

    def load_live(self, upload_id: str, owner: str) -> UploadInfo:
        info = self.load(upload_id, owner)
        expires = self.expires(upload_id)
        if expires <= time.time():
            gone = Gone(f'the upload expired at {time.ctime(expires)}')
            gone.first_seen = self._mark_expired(upload_id)  # type: ignore[attr-defined]
            raise gone
        return info

    def _mark_expired(self, upload_id: str) -> bool:
        try:
            self.client.use().put_object(
                Bucket=self.bucket,
                Key=self.key(upload_id, 'expired'),
                Body=b'',
                IfNoneMatch='*',
            )
        except ClientError:
            return False
        return True

    def save(self, info: UploadInfo) -> None:
        state = self.state(info.id)
        state['info'] = asdict(info)
        self.write_state(state)

    def offset(self, upload_id: str) -> int:
        return int(self.state(upload_id)['offset'])

    def expires(self, upload_id: str) -> float:
        return float(self.state(upload_id)['updated']) + self.expiry

    def has_data(self, upload_id: str) -> bool:
        """Whether the bytes still wait to become an object (not committed)."""
        state = self.state(upload_id)
        return not state.get('assembled') or self.client.exists(
            self.key(upload_id, 'data')
        )

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[S3Writer]:
        lock = self.key(upload_id, 'lock')
        self._lock(lock)
        try:
            writer = S3Writer(self, self.state(upload_id), lock)
            yield writer
        finally:
            with contextlib.suppress(Exception):
                self._delete(lock)

    def _lock(self, lock: str, wait: float = LOCK_WAIT) -> None:
        deadline = time.monotonic() + wait
        client = self.client.use()
        while True:
            try:
                client.put_object(
                    Bucket=self.bucket, Key=lock, Body=b'', IfNoneMatch='*'
                )
                return
            except ClientError as exc:
                if exc.response.get('Error', {}).get('Code') != 'PreconditionFailed':
                    raise
            with contextlib.suppress(ClientError):
                head = client.head_object(Bucket=self.bucket, Key=lock)
                if head['LastModified'].timestamp() < time.time() - LOCK_TTL:
                    logger.warning('breaking a stale upload lock %s', lock)
                    client.delete_object(Bucket=self.bucket, Key=lock)
                    continue
            if time.monotonic() >= deadline:
                raise Locked('another request is writing to this upload')
            time.sleep(0.1)

    # -- expiry (filestorectl gc / stats) ---------------------------------------------
    def ids(self) -> list[str]:
        """Every upload id present (live, complete or expired)."""
        found = []
        with self.client.errors('list resumable uploads'):
            pages = (
                self.client.use()
                .get_paginator('list_objects_v2')
                .paginate(Bucket=self.bucket, Prefix=self.root, Delimiter='/')
            )
            for page in pages:
                for common in page.get('CommonPrefixes', ()):
                    name = common['Prefix'][len(self.root) :].rstrip('/')
                    if is_upload_id(name):
                        found.append(name)
        return sorted(found)

    def expired_ids(self, now: float | None = None) -> list[str]:
        """Uploads whose expiry has passed (and debris without a state)."""
        now = time.time() if now is None else now
        found = []
        for upload_id in self.ids():
            try:
                if self.expires(upload_id) <= now:
                    found.append(upload_id)
            except NotFound:
                found.append(upload_id)
        return found

    def sweep(self, now: float | None = None) -> int:
        """Remove expired uploads that no writer holds; return how many."""
        removed = 0
        for upload_id in self.expired_ids(now):
            removed += self.remove(upload_id, wait=0)
        return removed

    def remove(
        self, upload_id: str, *, wait: float | None = None, held: bool = False
    ) -> bool:
        """Delete the upload's state, tail and multipart upload."""
        try:
            state = self.state(upload_id)
        except NotFound:
            state = {}  # debris: delete what is there
        lock = self.key(upload_id, 'lock')
        if not held:
            try:
                self._lock(lock, LOCK_WAIT if wait is None else wait)
            except Locked:
                return False
        try:
            self._delete(self.key(upload_id, 'state.json'))
            if state.get('mpu'):
                self.client.abort_quietly(self.key(upload_id, 'data'), state['mpu'])
            for name in (state.get('tail'), 'data', 'expired'):
                if name:
                    self._delete(self.key(upload_id, name))
        finally:
            if not held:
                with contextlib.suppress(Exception):
                    self._delete(lock)
        return True


class S3Writer:
    """Appends to one locked S3 upload: the tail, then parts, then a new tail."""

    def __init__(self, store: S3UploadStore, state: dict[str, Any], lock: str):
        self.store = store
        self.state = state
        self.upload_id = state['info']['id']
        self.lock = lock
        self.offset = int(state['offset'])
        self.written = 0
        tail = state.get('tail') or ''
        raw = store._get(store.key(self.upload_id, tail)) if tail else b''
        self._tail = memoryview(raw or b'')
        self._refreshed = time.monotonic()
        self.rollback()

    def rollback(self) -> None:
        """Forget what was appended since the last commit."""
        self.parts = list(self.state['parts'])
        self.mpu = self.state.get('mpu') or ''
        self.buffer = [self._tail] if len(self._tail) else []
        self.buffered = len(self._tail)
        self.written = 0

    def write(self, view: memoryview) -> None:
        self.buffer.append(memoryview(bytes(view)))
        self.buffered += len(view)
        self.written += len(view)
        if self.buffered >= self.store.part_bytes:
            self._send_part()
        if time.monotonic() - self._refreshed > REFRESH:
            self.store._put(self.lock, b'')  # still alive
            self._refreshed = time.monotonic()

    def _send_part(self) -> None:
        store = self.store
        client = store.client.use()
        data_key = store.key(self.upload_id, 'data')
        if not self.mpu:
            with store.client.errors('start a multipart upload'):
                reply = client.create_multipart_upload(
                    Bucket=store.bucket, Key=data_key
                )
            self.mpu = reply['UploadId']
        number = self.parts[-1]['PartNumber'] + 1 if self.parts else 1
        with store.client.errors(f'upload part {number}'):
            reply = client.upload_part(
                Bucket=store.bucket,
                Key=data_key,
                UploadId=self.mpu,
                PartNumber=number,
                Body=_Chunks(self.buffer),
            )
        self.parts.append({'PartNumber': number, 'ETag': reply['ETag']})
        self.buffer, self.buffered = [], 0

    def commit(self) -> int:
        """Store the tail, then the state naming it; return the new offset."""
        store = self.store
        old_tail = self.state.get('tail') or ''
        new_tail = old_tail
        if self.written:
            new_tail = ''
            if self.buffered:
                new_tail = f'tail-{self.offset + self.written}-{secrets.token_hex(4)}'
                body = b''.join(bytes(v) for v in self.buffer)
                store._put(store.key(self.upload_id, new_tail), body)
            self.offset += self.written
            self.written = 0
        self.state.update(
            offset=self.offset, parts=self.parts, mpu=self.mpu, tail=new_tail
        )
        store.write_state(self.state)
        if old_tail and old_tail != new_tail:
            with contextlib.suppress(Exception):
                store._delete(store.key(self.upload_id, old_tail))
        self._tail = memoryview(b''.join(bytes(v) for v in self.buffer))
        return self.offset

    # -- completion ----------------------------------------------------------------
    def assemble(self) -> None:
        """Make ``data`` hold the whole upload (the tail as the last part)."""
        store = self.store
        if self.state.get('assembled'):
            return
        data_key = store.key(self.upload_id, 'data')
        client = store.client.use()
        if not self.parts and not self.mpu:
            body = b''.join(bytes(v) for v in self.buffer)
            store._put(data_key, body)
        else:
            if self.buffered:
                self._send_part()
            with store.client.errors('complete a multipart upload'):
                client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=data_key,
                    UploadId=self.mpu,
                    MultipartUpload={'Parts': self.parts},
                )
        self.state.update(assembled=True, mpu='', parts=[])
        store.write_state(self.state)

    def digest(self, algorithms: list[str]) -> dict[str, bytes]:
        """Hash the assembled upload by reading it back (one GetObject)."""
        self.assemble()
        store = self.store
        hashers = {name: new_hasher(name) for name in algorithms}
        with store.client.errors('read the assembled upload'):
            body = store.client.use().get_object(
                Bucket=store.bucket, Key=store.key(self.upload_id, 'data')
            )['Body']
            while chunk := body.read(READ_CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
        return {name: h.digest() for name, h in hashers.items()}

    def store_object(self, digests: Mapping[str, bytes]) -> PutResult:
        """Commit the assembled upload through the S3 backend's own commit."""
        self.assemble()
        backend = self.store.backend
        handle = _Upload(temp_key=self.store.key(self.upload_id, 'data'))
        staged = Staged(
            digests[backend.algorithm].hex(), self.offset, dict(digests), handle
        )
        result = backend.commit(staged)
        tail = self.state.get('tail')
        if tail:
            with contextlib.suppress(Exception):
                self.store._delete(self.store.key(self.upload_id, tail))
            self.state['tail'] = ''
        return result
