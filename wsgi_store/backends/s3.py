"""The S3 backend: the object ``abcdef...`` is ``PREFIX/ab/abcdef...`` in one bucket.

This module holds the backend (its settings, the store's metadata, reads) and
hands the rest to collaborators, each testable alone:

* :class:`.s3_client.S3Client`: boto3 clients per process (created after fork)
  and the translation of botocore's errors into :mod:`wsgi_store.errors`;
* :class:`.s3_writes.S3Writer`: the write path (one PutObject for a body smaller
  than a part, else a multipart upload to a temporary key, a server-side copy
  and a delete);
* :class:`.s3_listing.S3Lister`: stored hashes and temporary uploads, and their sweep;
* :mod:`.s3_io`: the buffered upload part and the download reader.

Credentials come only from the standard AWS chain (environment, shared files,
instance roles) and are never logged.
"""

from __future__ import annotations

import functools
import io
import logging
import secrets
import time
from collections.abc import Iterator
from typing import IO, Any

from wsgi_store.backends.base import (
    Backend,
    Download,
    ObjectInfo,
    PutResult,
    ReadyCheck,
    Staged,
)
from wsgi_store.backends.s3_client import S3Client, new_client
from wsgi_store.backends.s3_io import S3Reader, total_size
from wsgi_store.backends.s3_listing import S3Lister
from wsgi_store.backends.s3_writes import S3Writer
from wsgi_store.backends.storemeta import (
    META_NAME,
    check_document,
    new_document,
    parse_document,
)
from wsgi_store.errors import BackendUnavailable, NotFound, RangeNotSatisfiable
from wsgi_store.hashing import Readable, hex_length

__all__ = ['COPY_LIMIT', 'MIN_PART_BYTES', 'MiB', 'S3Backend', 'S3Reader']

logger = logging.getLogger(__name__)  # the same name as s3_client.LOGGER_NAME

MiB = 1 << 20
MIN_PART_BYTES = 5 * MiB  # S3's smallest part (except the last one)
COPY_LIMIT = 5 << 30  # CopyObject's largest source; above it, a multipart copy


class S3Backend(Backend):
    """Objects in an S3 bucket under ``PREFIX/``, sharded like the filesystem store."""

    name = 's3'
    remote_lookups = True

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
        self.part_bytes = part_bytes
        self.chunk_bytes = chunk_bytes
        self.presign_seconds = presign_seconds
        make = functools.partial(
            new_client,
            endpoint_url=endpoint_url,
            region=region,
            addressing_style=addressing_style,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        self.client = S3Client(
            bucket,
            lambda kind: make(probe=kind == 'probe'),
            endpoint_url=endpoint_url,
            check=self.check_store,
        )
        self.writer = S3Writer(
            self.client,
            prefix=self.prefix,
            algorithm=algorithm,
            part_bytes=part_bytes,
            chunk_bytes=chunk_bytes,
            copy_limit=COPY_LIMIT,
        )
        self.lister = S3Lister(
            self.client, prefix=self.prefix, hex_length=self.hex_length
        )
        if check:
            self._check_at_start()

    @classmethod
    def from_config(cls, config: object, *, check: bool = True) -> S3Backend:
        """Build the backend from the ``s3_*`` settings of a :class:`Config`.

        ``check=False``: nothing is read or written at start (see
        :meth:`check_store`), e.g. to only read a migration source's metadata.
        """
        from wsgi_store.config import Config

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
            check=check,
        )

    def __repr__(self) -> str:
        where = self.endpoint_url or 'AWS'
        return f'S3Backend({where} bucket={self.bucket!r} prefix={self.prefix!r})'

    # -- layout --------------------------------------------------------------
    def key_for(self, hex_hash: str) -> str:
        """The object's key. ``hex_hash`` must already be validated."""
        return self.writer.key_for(hex_hash)

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
        meta = self.read_meta()
        if meta is None:
            doc = new_document(self.algorithm)
            with self.client.errors('write the store metadata'):
                self.client.get().put_object(
                    Bucket=self.bucket,
                    Key=self.meta_key,
                    Body=doc,
                    ContentType='application/json',
                )
            meta = self.read_meta() or parse_document(doc, self.meta_key)  # a race?
        where = f's3://{self.bucket}/{self.prefix}'
        check_document(meta, self.algorithm, where, 'another prefix')
        self.client.checked = True

    def read_meta(self) -> dict[str, Any] | None:
        """The store's metadata document; None when the prefix has none."""
        try:
            with self.client.errors('read the store metadata', missing='no metadata'):
                body = self.client.get().get_object(
                    Bucket=self.bucket, Key=self.meta_key
                )
                raw = body['Body'].read()
        except NotFound:
            return None
        return parse_document(raw, self.meta_key)

    def stat(self, hex_hash: str) -> ObjectInfo:
        key, missing = self.key_for(hex_hash), f'no object {hex_hash}'
        reply = self.client.head(key, missing)
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
            with self.client.errors('read an object', missing=missing):
                reply = self.client.use().get_object(
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
        with self.client.errors('read an object'):
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
        with self.client.errors('read an object', missing=f'no object {hex_hash}'):
            reply = self.client.use().get_object(**params)
        return S3Reader(reply['Body'], self.client.errors)  # type: ignore[return-value]

    def delete(self, hex_hash: str) -> None:
        key = self.key_for(hex_hash)
        self.client.head(key, f'no object {hex_hash}')  # DeleteObject never says
        with self.client.errors('delete an object'):
            self.client.use().delete_object(Bucket=self.bucket, Key=key)

    def presign_get(self, hex_hash: str) -> str:
        """A presigned GetObject URL valid for ``presign_seconds`` (for 307s)."""
        with self.client.errors('presign a URL'):
            return self.client.use().generate_presigned_url(  # type: ignore[no-any-return]
                'get_object',
                Params={'Bucket': self.bucket, 'Key': self.key_for(hex_hash)},
                ExpiresIn=self.presign_seconds,
            )

    def ready_checks(self) -> list[ReadyCheck]:
        """One cheap HeadBucket, a single attempt with short timeouts."""
        where = f'bucket {self.bucket} at {self.endpoint_url or "AWS"}'
        try:
            with self.client.errors('reach the bucket'):
                self.client.get('probe').head_bucket(Bucket=self.bucket)
        except BackendUnavailable as exc:
            return [ReadyCheck('s3', False, f'{where}: {exc.detail}')]
        return [ReadyCheck('s3', True, where)]

    def quarantine(self, hex_hash: str) -> str:
        key = self.key_for(hex_hash)
        reply = self.client.head(key, missing=f'no object {hex_hash}')
        # The random part: a second bad copy within a second must not replace it.
        stamp = f'{int(time.time())}.{secrets.token_hex(4)}'
        target = f'{self.prefix}quarantine/{hex_hash}.{stamp}'
        self.writer.copy(key, target, int(reply['ContentLength']))
        with self.client.errors('delete an object'):
            self.client.use().delete_object(Bucket=self.bucket, Key=key)
        return f's3://{self.bucket}/{target}'

    # -- writes and listings: the collaborators ------------------------------
    def stage(self, source: Readable, **options: Any) -> Staged:
        return self.writer.stage(source, **options)

    def commit(self, staged: Staged) -> PutResult:
        return self.writer.commit(staged)

    def discard(self, staged: Staged) -> None:
        self.writer.discard(staged)

    def iter_hashes(self, after: str = '') -> Iterator[str]:
        return self.lister.iter_hashes(after)

    def sweep_temp(self, max_age: float) -> int:
        """See :meth:`.s3_listing.S3Lister.sweep_temp` (never 0 outside tests)."""
        return self.lister.sweep_temp(max_age)

    def temp_names(self) -> list[str]:
        return self.lister.temp_names()

    def close(self) -> None:
        self.client.close()
