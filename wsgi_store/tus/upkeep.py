"""Maintenance of resumable uploads, for ``filestorectl gc`` and ``stats``.

Only the filesystem backend keeps upload state (``STORE/uploads/``); other
backends have none yet and count zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..config import Config
from .sessions import UploadStore


@dataclass(frozen=True)
class UploadCounts:
    """Resumable uploads in a store."""

    live: int = 0  # not expired (in progress, or complete and still answerable)
    expired: int = 0  # waiting for gc


def upload_store(config: Config) -> UploadStore | None:
    """The store's upload state, or None when the backend keeps none."""
    if config.backend != 'fs':
        return None
    return UploadStore(
        os.path.join(config.store_dir, 'uploads'),
        config.upload_expiry,
        fsync=config.fsync,
    )


def sweep_expired(config: Config) -> int:
    """Remove expired uploads (never one a writer holds); return how many."""
    store = upload_store(config)
    return 0 if store is None else store.sweep()


def count_uploads(config: Config) -> UploadCounts:
    """How many uploads are live and how many have expired."""
    store = upload_store(config)
    if store is None:
        return UploadCounts()
    now = time.time()
    expired = len(store.expired_ids(now))
    return UploadCounts(len(store.ids()) - expired, expired)
