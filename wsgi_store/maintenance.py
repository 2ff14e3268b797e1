"""Store maintenance: the start-up sweep (more comes with filestorectl)."""

from __future__ import annotations

import logging

from .backends import make_backend
from .config import Config

logger = logging.getLogger(__name__)


def sweep_on_start(config: Config) -> int:
    """Remove every temp upload left by a previous run (call before workers fork)."""
    if config.backend != 'fs':
        return 0  # S3 temp keys may belong to other nodes: gc removes old ones
    backend = make_backend(config)
    try:
        return backend.sweep_temp(0)
    finally:
        backend.close()
