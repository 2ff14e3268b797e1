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
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from botocore.exceptions import ClientError

from wsgi_store.backends.s3 import S3Backend
from wsgi_store.errors import NotFound
from wsgi_store.tus.headers import Locked, is_upload_id
from wsgi_store.tus.s3writer import S3Writer
from wsgi_store.tus.sessions import UploadInfo, check_live

logger = logging.getLogger(__name__)

LOCK_TTL = 30.0  # seconds without a refresh after which a lock is stale
LOCK_WAIT = 5.0  # seconds a writer waits for another (as on the filesystem)


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
        with self.client.errors('read upload state'):
            try:
                reply = self.client.use().get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get('Error', {}).get('Code') in ('NoSuchKey', '404'):
                    return None
                raise
            data: bytes = reply['Body'].read()
        return data

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
        return check_live(self, self.load(upload_id, owner), upload_id)

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

    def _lock(self, lock: str, wait: float | None = None) -> None:
        deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
        client = self.client.use()
        while True:
            try:
                client.put_object(
                    Bucket=self.bucket, Key=lock, Body=b'', IfNoneMatch='*'
                )
                return
            except Exception as exc:
                if not _precondition_failed(exc):
                    with self.client.errors('lock an upload'):
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
                self._lock(lock, wait)
            except Locked:
                return False
        try:
            # The state first: a reader that finds no state finds no upload.
            self._delete(self.key(upload_id, 'state.json'))
            self._delete_debris(upload_id, state.get('mpu') or '')
        finally:
            if not held:
                with contextlib.suppress(Exception):
                    self._delete(lock)
        return True

    def _delete_debris(self, upload_id: str, mpu: str) -> None:
        """Every multipart upload and key of the upload, a dead writer's too."""
        client = self.client.use()
        data_key = self.key(upload_id, 'data')
        with self.client.errors('list an upload'):
            pages = client.get_paginator('list_multipart_uploads').paginate(
                Bucket=self.bucket, Prefix=data_key
            )
            pending = {it['UploadId'] for p in pages for it in p.get('Uploads', ())}
        for upload in pending | ({mpu} if mpu else set()):
            self.client.abort_quietly(data_key, upload)
        with self.client.errors('list an upload'):
            pages = client.get_paginator('list_objects_v2').paginate(
                Bucket=self.bucket, Prefix=self.key(upload_id, '')
            )
            keys = [it['Key'] for p in pages for it in p.get('Contents', ())]
        lock = self.key(upload_id, 'lock')
        for key in keys:
            if key != lock:
                self._delete(key)


def _precondition_failed(exc: Exception) -> bool:
    if not isinstance(exc, ClientError):
        return False
    return exc.response.get('Error', {}).get('Code') == 'PreconditionFailed'
