"""Maintenance of resumable uploads, for ``filestorectl gc`` and ``stats``.

The filesystem backend keeps upload state in ``STORE/uploads/``, the S3 backend
under ``PREFIX/uploads/`` in its bucket.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wsgi_store.config import Config
from wsgi_store.tus.sessions import UploadStore


@dataclass(frozen=True)
class UploadCounts:
    """Resumable uploads in a store."""

    live: int = 0  # not expired (in progress, or complete and still answerable)
    expired: int = 0  # waiting for gc


@contextlib.contextmanager
def upload_store(config: Config) -> Iterator[Any]:
    """The store's upload state (an S3 backend is opened and closed here)."""
    if config.backend == 's3':
        from wsgi_store.backends.s3 import S3Backend
        from wsgi_store.tus.s3uploads import S3UploadStore

        backend = S3Backend.from_config(config)
        try:
            yield S3UploadStore(backend, config.upload_expiry)
        finally:
            backend.close()
        return
    yield UploadStore(
        os.path.join(config.store_dir, 'uploads'),
        config.upload_expiry,
        fsync=config.fsync,
    )


def sweep_expired(config: Config) -> int:
    """Remove expired uploads (never one a writer holds); return how many."""
    with upload_store(config) as store:
        return int(store.sweep())


def count_uploads(config: Config) -> UploadCounts:
    """How many uploads are live and how many have expired."""
    with upload_store(config) as store:
        now = time.time()
        expired = len(store.expired_ids(now))
        return UploadCounts(len(store.ids()) - expired, expired)
