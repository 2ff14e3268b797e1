"""Moving corrupt objects aside on the filesystem, by inode rather than by name."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def quarantine_target(quarantine_dir: Path, hex_hash: str) -> str:
    """A fresh path ``<hash>.<utc stamp>.<random>`` in the quarantine directory."""
    quarantine_dir.mkdir(mode=0o750, exist_ok=True)
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    return f'{quarantine_dir}/{hex_hash}.{stamp}.{secrets.token_hex(4)}'


def quarantine_if_same(path: str, fd: int, quarantine_dir: Path) -> str | None:
    """Move ``path`` to the quarantine only if it is the file open as ``fd``.

    NOTE: ``verify --repair`` hashes through an open file; by the time it moves
    the object, a client may have deleted it and uploaded the right bytes again.
    The name is checked against the inode before the rename, and the moved file
    after it; if a replacement slipped in between, it is put back (never over a
    newer copy). Returns where the file went, or None when it was not moved.
    """
    checked = os.fstat(fd)
    if not _names(path, checked):
        return None
    target = quarantine_target(quarantine_dir, os.path.basename(path))
    try:
        os.rename(path, target)  # same filesystem: atomic
    except FileNotFoundError:
        return None
    if _names(target, checked):
        return target
    try:
        os.link(target, path)  # fails if yet another copy is there already
    except FileExistsError:
        logger.warning('kept a good copy of %s in %s', path, target)
        return None
    os.unlink(target)
    logger.info('%s was replaced while being checked: left in place', path)
    return None


def _names(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
