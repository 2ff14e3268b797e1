"""The S3 backend: the object ``abcdef...`` is ``PREFIX/ab/abcdef...`` in one bucket.

The backend is split by job; this module holds the class, its layout and reads:

* :mod:`.s3_writes`: the write path (one PutObject for a body smaller than a part,
  else a multipart upload to a temporary key, a server-side copy and a delete);
* :mod:`.s3_listing`: listing stored hashes and temporary uploads, and their sweep;
* :mod:`.s3_io`: the buffered upload part and the download reader;
* :mod:`.s3_client`: boto3 clients per process (created after fork) and the
  translation of botocore's errors into :mod:`wsgi_store.errors`.

Credentials come only from the standard AWS chain (environment, shared files,
instance roles) and are never logged.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from contextlib import AbstractContextManager
from typing import IO, Any

from ..digests import hex_length, new_hasher
from ..errors import BackendUnavailable, NotFound, RangeNotSatisfiable, StoreMismatch
from .base import Backend, Download, ObjectInfo, ReadyCheck
from .fs import LAYOUT_VERSION, META_NAME
from .s3_client import ProcessClients, new_client, translate_errors
from .s3_io import S3Reader, total_size
from .s3_listing import S3Listing
from .s3_writes import S3Writes

__all__ = ['COPY_LIMIT', 'MIN_PART_BYTES', 'MiB', 'S3Backend', 'S3Reader']

logger = logging.getLogger(__name__)  # the same name as s3_client.LOGGER_NAME

MiB = 1 << 20
MIN_PART_BYTES = 5 * MiB  # S3's smallest part (except the last one)
COPY_LIMIT = 5 << 30  # CopyObject's largest source; above it, a multipart copy


class S3Backend(S3Writes, S3Listing, Backend):
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
        self._clients = ProcessClients(self._new_client)
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
        return self._clients.get(kind)

    def _new_client(self, kind: str) -> Any:
        return new_client(
            endpoint_url=self.endpoint_url,
            region=self.region,
            addressing_style=self.addressing_style,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
            probe=kind == 'probe',
        )

    def _s3(self) -> Any:
        """The client, once the store's settings have been checked."""
        if not self._store_checked:
            self.check_store()
        return self._client()

    def _errors(self, action: str, missing: str = '') -> AbstractContextManager[None]:
        """Turn botocore's exceptions into :mod:`wsgi_store.errors`."""
        return translate_errors(
            action, missing, bucket=self.bucket, endpoint_url=self.endpoint_url
        )

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
        size = total_size(reply)
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
        self._clients.close()
