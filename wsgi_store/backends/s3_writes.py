"""The S3 backend's write path, in constant memory (one part buffered at most).

* A body smaller than one part (``s3_part_bytes``) stays in that buffer; ``commit``
  sends it with one PutObject straight to its final key. PutObject is atomic (the
  key shows the whole body or nothing), so a temporary key and a server-side copy
  would only add two requests to every small upload.
* A larger body streams to a temporary key ``PREFIX/tmp/<random>`` as a multipart
  upload while it is read (its final name is known only at the end); ``commit``
  copies it server-side to its final key (a multipart copy above 5 GiB) and deletes
  the temporary key.

Either way ``commit`` first asks HeadObject whether the content is already stored
(then nothing is written: ``created`` is False). Any failure aborts the multipart
upload and deletes the temporary key.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from wsgi_store.backends.base import PutResult, Staged
from wsgi_store.backends.s3_client import LOGGER_NAME, S3Client
from wsgi_store.backends.s3_io import _Chunks, _Upload
from wsgi_store.backends.streaming import copy_stream
from wsgi_store.errors import BackendUnavailable
from wsgi_store.hashing import Readable

logger = logging.getLogger(LOGGER_NAME)


class S3Writer:
    """Stages bodies and commits them under ``PREFIX/``; testable on its own.

    Args:
        client: the backend's :class:`~.s3_client.S3Client`.
        prefix: the store's key prefix (``''`` or ending in ``/``).
        algorithm: the store's hash algorithm (an object's key is its digest).
        part_bytes: the buffer, and the size of a multipart upload's parts.
        chunk_bytes: how much is read from a body at a time.
        copy_limit: CopyObject's largest source; above it, a multipart copy.
    """

    def __init__(
        self,
        client: S3Client,
        *,
        prefix: str,
        algorithm: str,
        part_bytes: int,
        chunk_bytes: int,
        copy_limit: int,
    ) -> None:
        self.client = client
        self.bucket = client.bucket
        self.prefix = prefix
        self.algorithm = algorithm
        self.part_bytes = part_bytes
        self.chunk_bytes = chunk_bytes
        self.copy_limit = copy_limit

    def key_for(self, hex_hash: str) -> str:
        """The object's key. ``hex_hash`` must already be validated."""
        return f'{self.prefix}{hex_hash[:2]}/{hex_hash}'

    def stage(
        self,
        source: Readable,
        *,
        extra_algorithms: Iterable[str] = (),
        length: int | None = None,
        max_bytes: int = 0,
    ) -> Staged:
        self.client.use()
        upload = _Upload()
        try:
            result = copy_stream(
                source,
                lambda view: self._buffer(upload, view),
                [self.algorithm, *extra_algorithms],
                chunk_bytes=self.chunk_bytes,
                max_bytes=max_bytes,
                length=length,
            )
            if upload.upload_id:
                self._finish_multipart(upload)
        except BaseException:
            self._cleanup(upload)
            raise
        return Staged(
            result.hexdigest(self.algorithm), result.size, result.digests, upload
        )

    def _buffer(self, upload: _Upload, view: memoryview) -> None:
        # Chunks are kept, not copied (a source may reuse a writable buffer).
        upload.buffer.append(view if view.readonly else memoryview(bytes(view)))
        upload.buffered += len(view)
        if upload.buffered >= self.part_limit(len(upload.parts)):
            self._send_part(upload)

    def part_limit(self, parts_sent: int) -> int:
        # Parts grow every 2000 so that an upload of unknown length fits in
        # S3's 10,000 parts (31x the part size times 2000 in all).
        return self.part_bytes << (parts_sent // 2000)

    def _send_part(self, upload: _Upload) -> None:
        client = self.client.get()
        if not upload.upload_id:
            upload.temp_key = f'{self.prefix}tmp/{secrets.token_hex(16)}'
            with self.client.errors('start a multipart upload'):
                reply = client.create_multipart_upload(
                    Bucket=self.bucket, Key=upload.temp_key
                )
            upload.upload_id = reply['UploadId']
        number = len(upload.parts) + 1
        with self.client.errors(f'upload part {number}'):
            reply = client.upload_part(
                Bucket=self.bucket,
                Key=upload.temp_key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=_Chunks(upload.buffer),
            )
        upload.parts.append({'PartNumber': number, 'ETag': reply['ETag']})
        upload.buffer, upload.buffered = [], 0

    def _finish_multipart(self, upload: _Upload) -> None:
        if upload.buffered:
            self._send_part(upload)
        with self.client.errors('complete a multipart upload'):
            self.client.get().complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.temp_key,
                UploadId=upload.upload_id,
                MultipartUpload={'Parts': upload.parts},
            )
        upload.upload_id = ''

    def commit(self, staged: Staged) -> PutResult:
        upload: _Upload = staged.handle
        key = self.key_for(staged.hash)
        try:
            created = not self.client.exists(key)
            if created and upload.temp_key:
                self.copy(upload.temp_key, key, staged.size)
            elif created:
                with self.client.errors('store the object'):
                    self.client.use().put_object(
                        Bucket=self.bucket, Key=key, Body=_Chunks(upload.buffer)
                    )
        finally:
            self._cleanup(upload)
            staged.done = True
        return PutResult(staged.hash, staged.size, created)

    def discard(self, staged: Staged) -> None:
        self._cleanup(staged.handle)
        staged.done = True

    def _cleanup(self, upload: _Upload | None) -> None:
        """Abort, delete, forget: never raises (the original error matters more)."""
        if upload is None:
            return
        upload.buffer, upload.buffered = [], 0
        client = self.client.get()
        try:
            if upload.upload_id:
                self.client.abort_quietly(upload.temp_key, upload.upload_id)
                upload.upload_id = ''
            if upload.temp_key:
                with self.client.errors('delete a temporary object'):
                    client.delete_object(Bucket=self.bucket, Key=upload.temp_key)
                upload.temp_key = ''
        except BackendUnavailable as exc:
            logger.warning('left a temporary upload for sweep_temp: %s', exc.detail)

    def copy(self, source_key: str, key: str, size: int) -> None:
        """Server-side copy; a multipart copy when CopyObject cannot take it."""
        client = self.client.use()
        copy_source = {'Bucket': self.bucket, 'Key': source_key}
        with self.client.errors('copy an object'):
            if size <= self.copy_limit:
                client.copy_object(Bucket=self.bucket, Key=key, CopySource=copy_source)
                return
            from boto3.s3.transfer import TransferConfig

            client.copy(
                copy_source,
                self.bucket,
                key,
                Config=TransferConfig(
                    multipart_threshold=self.copy_limit,
                    multipart_chunksize=self.part_bytes,
                    max_concurrency=4,
                ),
            )
