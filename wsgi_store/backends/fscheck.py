"""What ``verify`` and ``stats`` ask of the filesystem store beyond its objects.

* :func:`layout_problems`: shard entries that are not objects (a symlink, a
  directory, a name that is not a hash, a hash in the wrong shard);
* :func:`quarantine_entry`: move such an entry aside, never overwriting anything;
* :func:`space`: free bytes and inodes, and the number of quarantined objects.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from wsgi_store.backends.base import LayoutProblem, Space
from wsgi_store.backends.fslayout import SHARDS
from wsgi_store.hashing import is_object_name


def layout_problems(
    root: Path, algorithm: str, hex_length: int
) -> Iterator[LayoutProblem]:
    """Every shard entry that is not an object, in shard and name order.

    An entry is an object when it is a regular file (not a symlink) named by
    lowercase hex of the right length that starts with its shard's name.
    """
    for shard in SHARDS:
        try:
            entries = sorted(os.scandir(root / shard), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            reason = _entry_problem(entry, shard, algorithm, hex_length)
            if reason:
                yield LayoutProblem(entry.path, entry.name, reason)


def _entry_problem(
    entry: os.DirEntry, shard: str, algorithm: str, hex_length: int
) -> str:
    name = entry.name
    if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
        return 'not a regular file'
    if not is_object_name(name, hex_length):
        return f'not a {algorithm} name (lowercase hex, {hex_length})'
    if not name.startswith(shard):
        return f'in shard {shard}, but its name belongs in {name[:2]}'
    return ''


def quarantine_entry(quarantine_dir: Path, path: Path) -> Path:
    """Move a non-object out of the shards, never overwriting anything."""
    quarantine_dir.mkdir(mode=0o750, exist_ok=True)
    base = f'misnamed.{path.parent.name}.{path.name}.{time.time_ns()}'
    for attempt in range(1000):
        target = quarantine_dir / f'{base}.{attempt}'
        if path.is_dir() and not path.is_symlink():
            if not target.exists():
                os.rename(path, target)
                return target
            continue
        try:
            os.link(path, target, follow_symlinks=False)  # fails if target exists
        except FileExistsError:
            continue
        os.unlink(path)
        return target
    raise FileExistsError(f'no free quarantine name for {path}')


def space(root: Path, quarantine_dir: Path) -> Space:
    """Free bytes and inodes of the store's filesystem; quarantined entries."""
    st = os.statvfs(root)
    quarantined = len(os.listdir(quarantine_dir)) if quarantine_dir.is_dir() else 0
    return Space(
        free_bytes=st.f_bavail * st.f_frsize,
        free_inodes=st.f_favail if st.f_files else None,
        quarantined=quarantined,
    )
