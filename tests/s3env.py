"""The S3 server the tests use, taken from the environment (any S3-compatible one).

``shared/s3/start-s3.sh`` prints the variables read here: ``S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``S3_BUCKET`` and
``AWS_DEFAULT_REGION``. Every test run writes under its own key prefix
(:data:`RUN_PREFIX`) and every test under its own prefix below it, removed by
:func:`cleanup` afterwards (keys and pending multipart uploads alike).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wsgi_store.backends.s3 import S3Backend
from wsgi_store.config import Config

REQUIRED = (
    'S3_ENDPOINT_URL',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'S3_BUCKET',
)
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
RUN_PREFIX = f'wsgi-store-tests/{time.strftime("%Y%m%dT%H%M%S")}-{secrets.token_hex(4)}'


def require_s3() -> None:
    """Skip the test when no S3 server is configured; fail it under ``CI=true``."""
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if not missing:
        return
    reason = (
        f'no S3 server configured ({", ".join(missing)} unset); run '
        'shared/s3/start-s3.sh and export what it prints'
    )
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def new_prefix(name: str = 'test') -> str:
    """A fresh key prefix under this run's prefix."""
    safe = ''.join(c if c.isalnum() or c in '-_' else '-' for c in name)[:60]
    return f'{RUN_PREFIX}/{safe}-{secrets.token_hex(3)}'


def s3_config(prefix: str, **changes: object) -> Config:
    """A :class:`Config` selecting the S3 backend on the test server."""
    require_s3()
    config = Config(
        backend='s3',
        s3_endpoint_url=os.environ['S3_ENDPOINT_URL'],
        s3_bucket=os.environ['S3_BUCKET'],
        s3_region=os.environ.get('AWS_DEFAULT_REGION', 'us-east-1'),
        s3_prefix=prefix,
        s3_addressing_style='path',
        s3_connect_timeout=5.0,
        s3_read_timeout=30.0,
    )
    return config.replace(**changes)


def node_settings(prefix: str, part_bytes: int) -> dict[str, object]:
    """WSGI_STORE_* settings shared by every gunicorn node on one bucket and prefix."""
    config = s3_config(prefix)
    return {
        'backend': 's3',
        's3_endpoint_url': config.s3_endpoint_url,
        's3_bucket': config.s3_bucket,
        's3_prefix': prefix,
        's3_region': config.s3_region,
        's3_addressing_style': 'path',
        's3_part_bytes': part_bytes,
        'workers': 1,
        'threads': 4,
    }


def client() -> Any:
    """A plain boto3 client for the test server (to look behind the backend)."""
    import boto3
    from botocore.config import Config as BotoConfig

    require_s3()
    return boto3.client(
        's3',
        endpoint_url=os.environ['S3_ENDPOINT_URL'],
        region_name=os.environ.get('AWS_DEFAULT_REGION', 'us-east-1'),
        config=BotoConfig(
            signature_version='s3v4',
            s3={'addressing_style': 'path'},
            retries={'max_attempts': 3, 'mode': 'standard'},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def bucket() -> str:
    return os.environ['S3_BUCKET']


def list_keys(prefix: str, s3: Any = None) -> list[str]:
    """Every key under ``prefix/``, sorted."""
    s3 = s3 or client()
    pages = s3.get_paginator('list_objects_v2').paginate(
        Bucket=bucket(), Prefix=prefix.rstrip('/') + '/'
    )
    return sorted(item['Key'] for page in pages for item in page.get('Contents', ()))


def list_uploads(prefix: str, s3: Any = None) -> list[dict[str, Any]]:
    """Pending multipart uploads under ``prefix/``."""
    s3 = s3 or client()
    pages = s3.get_paginator('list_multipart_uploads').paginate(
        Bucket=bucket(), Prefix=prefix.rstrip('/') + '/'
    )
    return [item for page in pages for item in page.get('Uploads', ())]


def cleanup(prefix: str) -> None:
    """Delete every key under ``prefix/`` and abort its multipart uploads."""
    s3 = client()
    for upload in list_uploads(prefix, s3):
        s3.abort_multipart_upload(
            Bucket=bucket(), Key=upload['Key'], UploadId=upload['UploadId']
        )
    keys = list_keys(prefix, s3)
    for start in range(0, len(keys), 1000):
        batch = [{'Key': key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket(), Delete={'Objects': batch, 'Quiet': True})


def prefix_fixture(request: pytest.FixtureRequest) -> Iterator[str]:
    """Body of a ``prefix`` fixture: a fresh prefix, cleaned afterwards."""
    require_s3()
    prefix = new_prefix(request.node.name)
    try:
        yield prefix
    finally:
        cleanup(prefix)


@contextlib.contextmanager
def s3_backend(name: str = 'backend', **changes: object) -> Iterator[S3Backend]:
    """An :class:`S3Backend` on a fresh prefix, cleaned (keys and uploads) after."""
    prefix = new_prefix(name)
    changes = {'s3_part_bytes': 5 << 20, **changes}  # S3's minimum: cheap tests
    backend = S3Backend.from_config(s3_config(prefix, **changes))
    try:
        yield backend
    finally:
        backend.close()
        cleanup(prefix)
