"""gunicorn server hooks, shared by gunicorn.conf.py and filestorectl's embedded server.

Each hook takes the resolved :class:`Config` first; gunicorn.conf.py and
``server.py`` bind it with ``functools.partial`` or a small wrapper.
"""

from __future__ import annotations

import logging

from .config import Config
from .maintenance import sweep_on_start

logger = logging.getLogger(__name__)


def on_starting(config: Config, server: object) -> None:
    """In the master, before any worker forks: sweep stale temp uploads."""
    sweep_on_start(config)


def child_exit(config: Config, server: object, worker: object) -> None:
    """In the master, after a worker exited."""


def post_fork(config: Config, server: object, worker: object) -> None:
    """In each worker right after fork (S3 clients are made lazily after this)."""
