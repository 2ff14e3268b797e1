"""The S3 yardstick: boto3 straight to the S3 server the store uses.

The same client settings as the store's (``wsgi_store.backends.s3_client.new_client``),
the same concurrency as the store's row: threads sharing one client (the store's
workers share one per process) doing PutObject/GetObject of 1 KiB objects for a
while, or one large object as a multipart upload with the store's part size, parts
sent one after another (the store sends them one at a time too), and one download
on one connection.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from wsgi_store.backends.s3_client import new_client

REQUIRED = (
    'S3_ENDPOINT_URL',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'S3_BUCKET',
)
DEFAULT_PART_BYTES = 16 << 20  # the store's default (Config.s3_part_bytes)
MiB = 1 << 20


def missing() -> list[str]:
    """The S3 settings absent from the environment (empty: S3 is configured)."""
    return [name for name in REQUIRED if not os.environ.get(name)]


def part_bytes() -> int:
    """The store's multipart part size: ``WSGI_STORE_S3_PART_BYTES`` or its default."""
    raw = os.environ.get('WSGI_STORE_S3_PART_BYTES', '')
    return int(raw) if raw.strip().isdigit() else DEFAULT_PART_BYTES


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the bench writes: one bucket, one run prefix (``.../``)."""

    endpoint: str
    bucket: str
    region: str
    prefix: str

    @classmethod
    def from_env(cls) -> Target:
        stamp = time.strftime('%Y%m%dT%H%M%S')
        return cls(
            endpoint=os.environ['S3_ENDPOINT_URL'],
            bucket=os.environ['S3_BUCKET'],
            region=os.environ.get('AWS_DEFAULT_REGION', 'us-east-1'),
            prefix=f'wsgi-store-bench/{stamp}-{secrets.token_hex(4)}/',
        )

    def store_env(self) -> dict[str, str]:
        """The store's settings for the S3 backend under ``PREFIX/store/``."""
        return {
            'WSGI_STORE_BACKEND': 's3',
            'WSGI_STORE_S3_ENDPOINT_URL': self.endpoint,
            'WSGI_STORE_S3_BUCKET': self.bucket,
            'WSGI_STORE_S3_REGION': self.region,
            'WSGI_STORE_S3_PREFIX': f'{self.prefix}store',
            'WSGI_STORE_S3_PART_BYTES': str(part_bytes()),
        }

    def client(self) -> Any:
        """A client configured exactly as the store's."""
        return new_client(
            endpoint_url=self.endpoint,
            region=self.region,
            addressing_style='path',
            connect_timeout=5.0,
            read_timeout=60.0,
            max_attempts=3,
        )


@dataclasses.dataclass
class LoopResult:
    """What a timed loop of small requests did."""

    ok: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def _loop(threads: int, seconds: float, call: Any) -> LoopResult:
    """``call(thread, i)`` in ``threads`` threads until ``seconds`` have passed."""
    counts = [[0, 0] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(tid: int) -> None:
        start.wait(timeout=30)
        i = 0
        while time.monotonic() < deadline[0]:
            i += 1
            try:
                call(tid, i)
                counts[tid][0] += 1
            except Exception:  # counted and reported, like wrk counts errors
                counts[tid][1] += 1
                time.sleep(0.01)

    pool = [
        threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)
    ]
    for thread in pool:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start.wait(timeout=30)
    for thread in pool:  # each call is bounded by the client's timeouts and retries
        thread.join(timeout=seconds + 120)
    took = time.monotonic() - began
    return LoopResult(sum(c[0] for c in counts), sum(c[1] for c in counts), took)


def put_small(target: Target, threads: int, seconds: float, tag: str) -> LoopResult:
    """PutObject of distinct 1 KiB bodies from ``threads`` threads (objects/s)."""
    client = target.client()
    pad = b'b' * 1024

    def call(tid: int, i: int) -> None:
        name = f'{tag}-{tid}-{i}'
        body = (name.encode() + b'\n' + pad)[:1024]
        client.put_object(
            Bucket=target.bucket, Key=f'{target.prefix}boto3/{name}', Body=body
        )

    return _loop(threads, seconds, call)


def get_small(target: Target, threads: int, seconds: float) -> LoopResult:
    """GetObject of one 1 KiB object, body read, from ``threads`` threads."""
    client = target.client()
    key = f'{target.prefix}boto3/small-get'
    client.put_object(Bucket=target.bucket, Key=key, Body=b's' * 1024)

    def call(tid: int, i: int) -> None:
        reply = client.get_object(Bucket=target.bucket, Key=key)
        reply['Body'].read()

    return _loop(threads, seconds, call)


def put_big(target: Target, source: Path, tag: str) -> float:
    """One multipart upload of ``source`` (store's part size, one part at a time).

    Returns MB/s (10**6 bytes).
    """
    from boto3.s3.transfer import TransferConfig

    client = target.client()
    parts = part_bytes()
    config = TransferConfig(
        multipart_threshold=parts,
        multipart_chunksize=parts,
        max_concurrency=1,
        use_threads=False,
    )
    size = source.stat().st_size
    started = time.perf_counter()
    with open(source, 'rb') as body:
        client.upload_fileobj(
            body, target.bucket, f'{target.prefix}boto3/big-{tag}', Config=config
        )
    return size / (time.perf_counter() - started) / 1e6


def get_big(target: Target, tag: str) -> float:
    """One GetObject of the large object :func:`put_big` stored, on one connection.

    Returns MB/s (10**6 bytes) read.
    """
    client = target.client()
    started = time.perf_counter()
    reply = client.get_object(
        Bucket=target.bucket, Key=f'{target.prefix}boto3/big-{tag}'
    )
    total = 0
    for chunk in reply['Body'].iter_chunks(MiB):
        total += len(chunk)
    return total / (time.perf_counter() - started) / 1e6


def cleanup(target: Target) -> int:
    """Delete every key under the run prefix and abort its multipart uploads."""
    client = target.client()
    pages = client.get_paginator('list_multipart_uploads').paginate(
        Bucket=target.bucket, Prefix=target.prefix
    )
    for page in pages:
        for upload in page.get('Uploads', ()):
            client.abort_multipart_upload(
                Bucket=target.bucket, Key=upload['Key'], UploadId=upload['UploadId']
            )
    removed = 0
    pages = client.get_paginator('list_objects_v2').paginate(
        Bucket=target.bucket, Prefix=target.prefix
    )
    for page in pages:
        batch = [{'Key': item['Key']} for item in page.get('Contents', ())]
        if batch:  # a page holds at most 1000 keys: one DeleteObjects each
            client.delete_objects(
                Bucket=target.bucket, Delete={'Objects': batch, 'Quiet': True}
            )
            removed += len(batch)
    return removed
