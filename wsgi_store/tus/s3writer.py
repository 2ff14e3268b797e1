"""Appending to an upload whose state is in S3 (see :mod:`.s3uploads`).

:class:`S3Writer` has the interface :func:`.transfer.append` and
:func:`.complete.finish` use on the filesystem's writer: ``offset``,
``written``, ``write``, ``rollback``, ``commit``; plus ``digest`` and
``store_object`` for completion. It starts from the pending tail, sends a part
each time it holds ``part_bytes``, and on commit leaves the rest as a new tail
object, then the state naming it.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wsgi_store.backends.base import PutResult, Staged
from wsgi_store.backends.s3_io import _Chunks, _Upload
from wsgi_store.hashing import new_hasher

if TYPE_CHECKING:
    from wsgi_store.tus.s3uploads import S3UploadStore

REFRESH = 10.0  # a writer refreshes its lock at least this often while it writes
READ_CHUNK = 1 << 20


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
        started = getattr(self, 'mpu', '')
        if started and started != (self.state.get('mpu') or ''):
            self.store.client.abort_quietly(
                self.store.key(self.upload_id, 'data'), started
            )
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
