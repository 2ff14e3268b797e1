"""The filesystem store's layout: 256 shard directories, ``tmp/`` and its metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wsgi_store.backends import fstemp
from wsgi_store.backends.storemeta import (
    LAYOUT_VERSION,
    META_NAME,
    SHARDS,
    check_document,
    new_document,
)

__all__ = ['LAYOUT_VERSION', 'META_NAME', 'SHARDS', 'init_layout']


def init_layout(root: Path, algorithm: str) -> None:
    """Create the layout (or check an existing one) at ``root``.

    Raises:
        StoreMismatch: the store was made with another algorithm or layout.
    """
    meta_path = root / META_NAME
    root.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        check_document(meta, algorithm, str(root), 'another store directory')
    for name in [*SHARDS, 'tmp']:
        (root / name).mkdir(mode=0o750, exist_ok=True)
    if meta_path.exists():
        return
    # Locked like an upload's temp file: another instance's sweep skips it.
    tmp = fstemp.create_locked(f'{root}/tmp/', '.meta')
    try:
        os.write(tmp.fd, new_document(algorithm))
        os.link(tmp.path, meta_path)  # first writer wins, never overwritten
    except FileExistsError:
        pass
    finally:
        tmp.remove()
    init_layout(root, algorithm)  # re-check what won the race
