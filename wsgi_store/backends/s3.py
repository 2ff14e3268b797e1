"""The S3 backend: the object ``abcdef...`` is ``PREFIX/ab/abcdef...`` in one bucket.

Write path, in constant memory (one part buffered at most), hashing while reading:

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

Clients are created lazily in the process that uses them and re-created after a
fork (never shared between gunicorn's master and its workers). Credentials come
only from the standard AWS chain (environment, shared files, instance roles) and
are never logged.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..digests import Readable, copy_stream, hex_length, new_hasher
from ..errors import BackendUnavailable, NotFound, RangeNotSatisfiable, StoreMismatch
from .base import Backend, Download, ObjectInfo, PutResult, ReadyCheck, Staged
from .fs import LAYOUT_VERSION, META_NAME

logger = logging.getLogger(__name__)

MiB = 1 << 20
MIN_PART_BYTES = 5 * MiB  # S3's smallest part (except the last one)
COPY_LIMIT = 5 << 30  # CopyObject's largest source; above it, a multipart copy
_NOT_FOUND = frozenset({'NoSuchKey', 'NoSuchUpload', '404', 'NotFound'})
_MISCONFIGURED = frozenset({
    'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch',
    'NoSuchBucket', 'InvalidBucketName', 'AuthorizationHeaderMalformed', 'ExpiredToken',
    'InvalidToken', '403',
})  # fmt: skip


class _Chunks(io.RawIOBase):
    """A seekable read-only file over buffered chunks, without joining them.

    botocore reads a part twice (to sign it, then to send it) and rewinds it on a
    retry; joining the chunks into one ``bytes`` would hold the part twice.
    """

    def __init__(self, views: list[memoryview]) -> None:
        super().__init__()
        self._views = views
        self._starts: list[int] = []
        total = 0
        for view in views:
            self._starts.append(total)
            total += len(view)
        self._size = total
        self._pos = 0

    def __len__(self) -> int:
        return self._size - self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        index = bisect.bisect_right(self._starts, self._pos) - 1
        view = self._views[index][self._pos - self._starts[index] :]
        count = min(len(view), len(buffer))
        buffer[:count] = view[:count]
        self._pos += count
        return count


@dataclass
class _Upload:
    """``Staged.handle`` of this backend: where a staged body is."""

    temp_key: str = ''  # set once a multipart upload began
    upload_id: str = ''  # set while the multipart upload is not completed
    parts: list[dict[str, Any]] = field(default_factory=list)
    buffer: list[memoryview] = field(default_factory=list)  # not yet sent
    buffered: int = 0


class S3Reader:
    """A downloaded object (or range) streamed from GetObject's body."""

    def __init__(self, body: Any, translate: Any) -> None:
        self._body = body
        self._translate = translate
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative)."""
        if self._body is None:
            return b''
        with self._translate('read the object'):
            data: bytes = self._body.read(None if size < 0 else size)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Release the connection (back to the pool when the body was read)."""
        if self._body is not None:
            self._body.close()
        self.closed = True

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class S3Backend(Backend):
    """Objects in an S3 bucket under ``PREFIX/``, sharded like the filesystem store."""

    name = 's3'

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = 'wsgi-store',
        algorithm: str = 'sha256',
        endpoint_url: str = '',
        region: str = '',
        addressing_style: str = 'path',
        part_bytes: int = 16 * MiB,
        chunk_bytes: int = MiB,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        presign_seconds: int = 300,
        check: bool = True,
    ) -> None:
        if not bucket:
            raise ValueError('the S3 backend needs a bucket (s3_bucket)')
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(
                f'the S3 part size must be at least {MIN_PART_BYTES} bytes'
            )
        self.bucket = bucket
        self.prefix = prefix.strip('/') + '/' if prefix.strip('/') else ''
        self.algorithm = algorithm
        self.hex_length = hex_length(algorithm)  # also validates the name
        self.endpoint_url = endpoint_url
        self.region = region
        self.addressing_style = addressing_style
        self.part_bytes = part_bytes
        self.chunk_bytes = chunk_bytes
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.presign_seconds = presign_seconds
        self.copy_limit = COPY_LIMIT
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._pid = 0
        self._store_checked = False
        if check:
            self._check_at_start()

    @classmethod
    def from_config(cls, config: object) -> S3Backend:
        """Build the backend from the ``s3_*`` settings of a :class:`Config`."""
        from ..config import Config

        assert isinstance(config, Config)
        return cls(
            config.s3_bucket,
            prefix=config.s3_prefix,
            algorithm=config.hash,
            endpoint_url=config.s3_endpoint_url,
            region=config.s3_region,
            addressing_style=config.s3_addressing_style,
            part_bytes=config.s3_part_bytes,
            chunk_bytes=config.chunk_bytes,
            connect_timeout=config.s3_connect_timeout,
            read_timeout=config.s3_read_timeout,
            max_attempts=config.s3_max_attempts,
            presign_seconds=config.s3_presign_seconds,
        )

    def __repr__(self) -> str:
        where = self.endpoint_url or 'AWS'
        return f'S3Backend({where} bucket={self.bucket!r} prefix={self.prefix!r})'

    # -- clients -------------------------------------------------------------
    def _client(self, kind: str = 'main') -> Any:
        """This process's client (``probe``: one attempt, for readiness checks)."""
        if self._pid == os.getpid() and kind in self._clients:
            return self._clients[kind]
        with self._lock:
            if self._pid != os.getpid():
                # NOTE: a client inherited across fork shares its sockets with the
                # parent; drop it without closing them.
                self._clients, self._pid = {}, os.getpid()
            if kind not in self._clients:
                self._clients[kind] = self._new_client(probe=kind == 'probe')
            return self._clients[kind]

    def _new_client(self, *, probe: bool) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        config = BotoConfig(
            signature_version='s3v4',
            s3={'addressing_style': self.addressing_style},
            retries={
                'max_attempts': 1 if probe else self.max_attempts,
                'mode': 'standard',
            },
            connect_timeout=min(self.connect_timeout, 2.0)
            if probe
            else self.connect_timeout,
            read_timeout=min(self.read_timeout, 5.0) if probe else self.read_timeout,
            max_pool_connections=32,
            # Many S3-compatible servers reject the newer flexible checksums.
            request_checksum_calculation='when_required',
            response_checksum_validation='when_required',
        )
        return boto3.session.Session().client(
            's3',
            endpoint_url=self.endpoint_url or None,
            region_name=self.region or None,
            config=config,
        )

    def _s3(self) -> Any:
        """The client, once the store's settings have been checked."""
        if not self._store_checked:
            self.check_store()
        return self._client()

    @contextlib.contextmanager
    def _errors(self, action: str, missing: str = '') -> Iterator[None]:
        """Turn botocore's exceptions into :mod:`wsgi_store.errors`."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, action, missing) from exc
        except NoCredentialsError as exc:
            raise self._misconfigured(action, 'no AWS credentials found') from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(
                f'S3 is unavailable: could not {action}: {exc}'
            ) from exc

    def _client_error(self, exc: Any, action: str, missing: str) -> Exception:
        error = exc.response.get('Error', {})
        code = str(error.get('Code', ''))
        message = error.get('Message') or code
        if missing and code in _NOT_FOUND:
            return NotFound(missing)
        if code in _MISCONFIGURED:
            return self._misconfigured(action, f'{code}: {message}')
        if code == 'InvalidRange':
            return RangeNotSatisfiable(f'could not {action}: {message}')
        return BackendUnavailable(f'S3 is unavailable: could not {action}: {message}')

    def _misconfigured(self, action: str, reason: str) -> BackendUnavailable:
        logger.error(
            'S3 configuration error: could not %s in bucket %r at %s: %s (check the '
            'credentials, the bucket name and its policy)',
            action, self.bucket, self.endpoint_url or 'AWS', reason,
        )  # fmt: skip
        return BackendUnavailable(f'S3 refused to {action}: {reason}')

    # -- layout --------------------------------------------------------------
    def key_for(self, hex_hash: str) -> str:
        """The object's key. ``hex_hash`` must already be validated."""
        return f'{self.prefix}{hex_hash[:2]}/{hex_hash}'

    @property
    def meta_key(self) -> str:
        """The key of the store's metadata document."""
        return self.prefix + META_NAME

    def _check_at_start(self) -> None:
        try:
            self.check_store()
        except BackendUnavailable as exc:
            # Workers must boot while S3 is down (``/readyz`` says so); the check
            # runs again before the first request that touches S3.
            logger.warning('S3 store not checked at start: %s', exc.detail)

    def check_store(self) -> None:
        """Record the algorithm and layout on first use; check them afterwards.

        Raises ``StoreMismatch`` when the prefix holds a store made with other
        settings, ``BackendUnavailable`` when S3 cannot be asked.
        """
        meta = self._read_meta()
        if meta is None:
            doc = {
                'algorithm': self.algorithm,
                'layout': LAYOUT_VERSION,
                'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            }
            with self._errors('write the store metadata'):
                self._client().put_object(
                    Bucket=self.bucket,
                    Key=self.meta_key,
                    Body=json.dumps(doc, indent=1).encode() + b'\n',
                    ContentType='application/json',
                )
            meta = self._read_meta() or doc  # re-check what won a race
        where = f's3://{self.bucket}/{self.prefix}'
        if meta.get('algorithm') != self.algorithm:
            raise StoreMismatch(
                f'the store at {where} uses {meta.get("algorithm")}, not '
                f'{self.algorithm}; start with --hash {meta.get("algorithm")} or use '
                'another prefix'
            )
        if meta.get('layout') != LAYOUT_VERSION:
            raise StoreMismatch(
                f'the store at {where} has layout {meta.get("layout")}, this version '
                f'reads {LAYOUT_VERSION}'
            )
        self._store_checked = True

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            with self._errors('read the store metadata', missing='no metadata'):
                body = self._client().get_object(Bucket=self.bucket, Key=self.meta_key)
                raw = body['Body'].read()
        except NotFound:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise StoreMismatch(
                f'{self.meta_key} is not a wsgi-store metadata document'
            )
        return meta

    # -- writes --------------------------------------------------------------
    def stage(
        self,
        source: Readable,
        *,
        extra_algorithms: Iterable[str] = (),
        length: int | None = None,
        max_bytes: int = 0,
    ) -> Staged:
        self._s3()
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
        if upload.buffered >= self._part_limit(len(upload.parts)):
            self._send_part(upload)

    def _part_limit(self, parts_sent: int) -> int:
        # Parts grow every 2000 so that an upload of unknown length fits in
        # S3's 10,000 parts (31x the part size times 2000 in all).
        return self.part_bytes << (parts_sent // 2000)

    def _send_part(self, upload: _Upload) -> None:
        client = self._client()
        if not upload.upload_id:
            upload.temp_key = f'{self.prefix}tmp/{secrets.token_hex(16)}'
            with self._errors('start a multipart upload'):
                reply = client.create_multipart_upload(
                    Bucket=self.bucket, Key=upload.temp_key
                )
            upload.upload_id = reply['UploadId']
        number = len(upload.parts) + 1
        with self._errors(f'upload part {number}'):
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
        with self._errors('complete a multipart upload'):
            self._client().complete_multipart_upload(
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
            created = not self._exists_key(key)
            if created and upload.temp_key:
                self._copy(upload.temp_key, key, staged.size)
            elif created:
                with self._errors('store the object'):
                    self._s3().put_object(
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
        client = self._client()
        try:
            if upload.upload_id:
                self._abort_quietly(upload.temp_key, upload.upload_id)
                upload.upload_id = ''
            if upload.temp_key:
                with self._errors('delete a temporary object'):
                    client.delete_object(Bucket=self.bucket, Key=upload.temp_key)
                upload.temp_key = ''
        except BackendUnavailable as exc:
            logger.warning('left a temporary upload for sweep_temp: %s', exc.detail)

    def _copy(self, source_key: str, key: str, size: int) -> None:
        """Server-side copy; a multipart copy when CopyObject cannot take it."""
        client = self._s3()
        copy_source = {'Bucket': self.bucket, 'Key': source_key}
        with self._errors('copy an object'):
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

    # -- reads ---------------------------------------------------------------
    def _head(self, key: str, missing: str) -> dict[str, Any]:
        with self._errors('read object metadata', missing=missing):
            reply: dict[str, Any] = self._s3().head_object(Bucket=self.bucket, Key=key)
        return reply

    def _exists_key(self, key: str) -> bool:
        try:
            self._head(key, missing='absent')
        except NotFound:
            return False
        return True

    def stat(self, hex_hash: str) -> ObjectInfo:
        reply = self._head(self.key_for(hex_hash), missing=f'no object {hex_hash}')
        mtime = reply['LastModified'].timestamp() if 'LastModified' in reply else 0.0
        return ObjectInfo(hex_hash, int(reply['ContentLength']), mtime)

    def get(self, hex_hash: str, *, inline_limit: int = 0) -> Download:
        """One GetObject of the first ``inline_limit`` bytes instead of a HeadObject.

        A small object comes back whole in ``data``; for a larger one only its
        size is kept and the caller streams it with :meth:`open`.
        """
        if inline_limit <= 0:
            return Download(self.stat(hex_hash))
        missing = f'no object {hex_hash}'
        try:
            with self._errors('read an object', missing=missing):
                reply = self._s3().get_object(
                    Bucket=self.bucket,
                    Key=self.key_for(hex_hash),
                    Range=f'bytes=0-{inline_limit - 1}',
                )
        except RangeNotSatisfiable:  # an empty object has no first byte
            return Download(self.stat(hex_hash), b'')
        size = _total_size(reply)
        mtime = reply['LastModified'].timestamp() if 'LastModified' in reply else 0.0
        info = ObjectInfo(hex_hash, size, mtime)
        if int(reply['ContentLength']) > inline_limit:  # a server ignoring Range
            reply['Body'].close()
            return Download(info)
        with self._errors('read an object'):
            data = reply['Body'].read()
        return Download(info, data if len(data) == size else None)

    def open(self, hex_hash: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        """Stream an object (``start`` to ``end`` exclusive) with one GetObject."""
        if end is not None and end <= start:
            self.stat(hex_hash)  # still NotFound when absent
            return io.BytesIO(b'')
        params = {'Bucket': self.bucket, 'Key': self.key_for(hex_hash)}
        if start or end is not None:
            params['Range'] = f'bytes={start}-{"" if end is None else end - 1}'
        with self._errors('read an object', missing=f'no object {hex_hash}'):
            reply = self._s3().get_object(**params)
        return S3Reader(reply['Body'], self._errors)  # type: ignore[return-value]

    def delete(self, hex_hash: str) -> None:
        key = self.key_for(hex_hash)
        self._head(key, missing=f'no object {hex_hash}')  # DeleteObject never says
        with self._errors('delete an object'):
            self._s3().delete_object(Bucket=self.bucket, Key=key)

    def iter_hashes(self, after: str = '') -> Iterator[str]:
        # Keys sort like their hashes (the shard is the hash's first two digits).
        start = f'{self.prefix}{after[:2]}/{after}' if len(after) >= 2 else ''
        start = start or self.prefix + after
        paginator = self._s3().get_paginator('list_objects_v2')
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, StartAfter=start
        )
        with self._errors('list objects'):
            for page in pages:
                for item in page.get('Contents', ()):
                    name = item['Key'][len(self.prefix) :]
                    if name[:3] > 'ff/':
                        return  # past the shards: tmp/, quarantine/, metadata
                    shard, _, hex_hash = name.partition('/')
                    if self._is_object(shard, hex_hash) and hex_hash > after:
                        yield hex_hash

    def _is_object(self, shard: str, hex_hash: str) -> bool:
        return (
            len(hex_hash) == self.hex_length
            and hex_hash[:2] == shard
            and all(c in '0123456789abcdef' for c in hex_hash)
        )

    def presign_get(self, hex_hash: str) -> str:
        """A presigned GetObject URL valid for ``presign_seconds`` (for 307s)."""
        with self._errors('presign a URL'):
            return self._s3().generate_presigned_url(  # type: ignore[no-any-return]
                'get_object',
                Params={'Bucket': self.bucket, 'Key': self.key_for(hex_hash)},
                ExpiresIn=self.presign_seconds,
            )

    def hash_object(self, hex_hash: str) -> str:
        """Re-hash a stored object by streaming it (for ``filestorectl verify``)."""
        hasher = new_hasher(self.algorithm)
        with self.open(hex_hash) as f:
            while chunk := f.read(self.chunk_bytes):
                hasher.update(chunk)
        return hasher.hexdigest()

    # -- maintenance ---------------------------------------------------------
    def sweep_temp(self, max_age: float = 0.0) -> int:
        """Abort uploads and delete temporary keys idle for over ``max_age`` seconds.

        An upload counts as idle from its last part (a slow upload still sending
        is kept). NOTE: the nodes of a scale-out setup share the prefix, so outside
        tests pass the configured ``temp_max_age``, never 0 (that would abort the
        uploads other nodes are receiving).
        """
        limit = time.time() - max_age
        with self._errors('sweep temporary uploads'):
            removed = self._sweep_uploads(limit) + self._sweep_temp_keys(limit)
        if removed:
            logger.info('removed %d stale temporary upload(s) under %s', removed, self)
        return removed

    def _sweep_uploads(self, limit: float) -> int:
        removed = 0
        pages = (
            self._s3()
            .get_paginator('list_multipart_uploads')
            .paginate(Bucket=self.bucket, Prefix=self.prefix)
        )
        for page in pages:
            for item in page.get('Uploads', ()):
                if item['Initiated'].timestamp() > limit:
                    continue
                if self._last_activity(item['Key'], item['UploadId']) <= limit:
                    self._abort_quietly(item['Key'], item['UploadId'])
                    removed += 1
        return removed

    def _last_activity(self, key: str, upload_id: str) -> float:
        """When an upload last received a part (0 when none; inf when gone)."""
        newest = 0.0
        try:
            with self._errors('list the parts of an upload', missing='gone'):
                pages = (
                    self._s3()
                    .get_paginator('list_parts')
                    .paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
                for page in pages:
                    for part in page.get('Parts', ()):
                        newest = max(newest, part['LastModified'].timestamp())
        except NotFound:
            return float('inf')  # completed or aborted meanwhile
        return newest

    def _sweep_temp_keys(self, limit: float) -> int:
        removed = 0
        client = self._s3()
        pages = client.get_paginator('list_objects_v2').paginate(
            Bucket=self.bucket, Prefix=self.prefix + 'tmp/'
        )
        for page in pages:
            for item in page.get('Contents', ()):
                if item['LastModified'].timestamp() <= limit:
                    client.delete_object(Bucket=self.bucket, Key=item['Key'])
                    removed += 1
        return removed

    def temp_names(self) -> list[str]:
        """Temporary keys (``tmp/...``) and pending multipart uploads (``upload:...``).

        A staged body smaller than one part lives in the staging process's memory
        only, so it is not listed (and nothing of it can leak).
        """
        client = self._s3()
        cut = len(self.prefix)
        names = []
        with self._errors('list temporary uploads'):
            pages = client.get_paginator('list_objects_v2').paginate(
                Bucket=self.bucket, Prefix=self.prefix + 'tmp/'
            )
            for page in pages:
                names += [item['Key'][cut:] for item in page.get('Contents', ())]
            pages = client.get_paginator('list_multipart_uploads').paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                names += [f'upload:{it["Key"][cut:]}' for it in page.get('Uploads', ())]
        return sorted(names)

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        with (
            contextlib.suppress(NotFound),
            self._errors('abort a multipart upload', missing='gone'),
        ):
            self._client().abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )

    def ready_checks(self) -> list[ReadyCheck]:
        """One cheap HeadBucket, a single attempt with short timeouts."""
        where = f'bucket {self.bucket} at {self.endpoint_url or "AWS"}'
        try:
            with self._errors('reach the bucket'):
                self._client('probe').head_bucket(Bucket=self.bucket)
        except BackendUnavailable as exc:
            return [ReadyCheck('s3', False, f'{where}: {exc.detail}')]
        return [ReadyCheck('s3', True, where)]

    def quarantine(self, hex_hash: str) -> str:
        key = self.key_for(hex_hash)
        reply = self._head(key, missing=f'no object {hex_hash}')
        # The random part: a second bad copy within a second must not replace it.
        stamp = f'{int(time.time())}.{secrets.token_hex(4)}'
        target = f'{self.prefix}quarantine/{hex_hash}.{stamp}'
        self._copy(key, target, int(reply['ContentLength']))
        with self._errors('delete an object'):
            self._s3().delete_object(Bucket=self.bucket, Key=key)
        return f's3://{self.bucket}/{target}'

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
            if self._pid == os.getpid():
                for client in clients.values():
                    client.close()


def _total_size(reply: dict[str, Any]) -> int:
    """The object's size from a (possibly partial) GetObject reply."""
    content_range = reply.get('ContentRange', '')  # bytes 0-99/1234
    if '/' in content_range:
        return int(content_range.rpartition('/')[2])
    return int(reply['ContentLength'])
