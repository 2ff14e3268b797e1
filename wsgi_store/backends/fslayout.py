"""The filesystem store's layout: 256 shard directories, ``tmp/`` and its metadata."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import StoreMismatch
from . import fstemp

LAYOUT_VERSION = 1
META_NAME = 'wsgi-store.json'
SHARDS = [f'{i:02x}' for i in range(256)]


def init_layout(root: Path, algorithm: str) -> None:
    """Create the layout (or check an existing one) at ``root``.

    Raises:
        StoreMismatch: the store was made with another algorithm or layout.
    """
    meta_path = root / META_NAME
    root.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        _check(root, json.loads(meta_path.read_text()), algorithm)
    for name in [*SHARDS, 'tmp']:
        (root / name).mkdir(mode=0o750, exist_ok=True)
    if meta_path.exists():
        return
    doc = {
        'algorithm': algorithm,
        'layout': LAYOUT_VERSION,
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    # Locked like an upload's temp file: another instance's sweep skips it.
    tmp = fstemp.create_locked(f'{root}/tmp/', '.meta')
    try:
        os.write(tmp.fd, (json.dumps(doc, indent=1) + '\n').encode())
        os.link(tmp.path, meta_path)  # first writer wins, never overwritten
    except FileExistsError:
        pass
    finally:
        tmp.remove()
    init_layout(root, algorithm)  # re-check what won the race


def _check(root: Path, meta: dict, algorithm: str) -> None:
    if meta.get('algorithm') != algorithm:
        raise StoreMismatch(
            f'the store at {root} uses {meta.get("algorithm")}, not '
            f'{algorithm}; start with --hash {meta.get("algorithm")} '
            'or use another store directory'
        )
    if meta.get('layout') != LAYOUT_VERSION:
        raise StoreMismatch(
            f'the store at {root} has layout '
            f'{meta.get("layout")}, this version reads {LAYOUT_VERSION}'
        )
