"""Objects written straight into a store's shard directories (``STORE/ab/<hex>``).

Seeding bypasses the service on purpose: it is setup, not the thing measured,
and a million objects must take seconds, not minutes. The content is genuine
(the name is the sha256 of the bytes), so the service could verify it.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

STAMP = 'bench-preload.done'
_FLAGS = os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC


def make_shards(root: Path) -> None:
    """Create the 256 shard directories (and ``tmp``) like the store does."""
    for i in range(256):
        (root / f'{i:02x}').mkdir(mode=0o750, parents=True, exist_ok=True)
    (root / 'tmp').mkdir(mode=0o750, exist_ok=True)


def put(root: Path, data: bytes) -> str:
    """Store ``data`` as ``root/ab/<sha256>`` (kept if already there); its hex."""
    hex_hash = hashlib.sha256(data).hexdigest()
    path = root / hex_hash[:2] / hex_hash
    if not path.exists():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = root / hex_hash[:2] / f'.{hex_hash}.seed'
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return hex_hash


def put_many(root: Path, count: int, size: int, tag: str) -> list[str]:
    """``count`` distinct new objects of ``size`` bytes (shards must exist); hashes."""
    pad = b'p' * size
    hashes = []
    for i in range(count):
        head = f'{tag}-{i}\n'.encode()
        data = head + pad[len(head) :]
        hex_hash = hashlib.sha256(data).hexdigest()
        try:  # a fresh tag makes new objects: create them in place
            fd = os.open(root / hex_hash[:2] / hex_hash, _FLAGS, 0o640)
        except FileExistsError:
            continue
        os.write(fd, data)
        os.close(fd)
        hashes.append(hex_hash)
    return hashes


def dav_files(root: Path, count: int, size: int, tag: str) -> list[str]:
    """``count`` files for nginx WebDAV under ``root/dav/``; their URL paths."""
    folder = root / 'dav' / tag
    folder.mkdir(parents=True, exist_ok=True)
    data = b'd' * size
    paths = []
    for i in range(count):
        fd = os.open(folder / str(i), _FLAGS, 0o640)
        os.write(fd, data)
        os.close(fd)
        paths.append(f'/dav/{tag}/{i}')
    return paths


def _tiny_range(root: str, start: int, stop: int) -> None:
    for i in range(start, stop):
        data = b'%d\n' % i
        hex_hash = hashlib.sha256(data).hexdigest()
        try:
            fd = os.open(f'{root}/{hex_hash[:2]}/{hex_hash}', _FLAGS, 0o640)
        except FileExistsError:
            continue
        os.write(fd, data)
        os.close(fd)


def preload(root: Path, count: int, jobs: int = 2) -> float:
    """Fill ``root`` with ``count`` tiny objects unless a stamp says it is done.

    Returns the seconds spent (0 when the cache was already complete).
    """
    stamp = root / STAMP
    if stamp.exists() and stamp.read_text().strip() == str(count):
        return 0.0
    started = time.monotonic()
    make_shards(root)
    step = -(-count // (jobs * 8))
    with ProcessPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(_tiny_range, str(root), lo, min(lo + step, count))
            for lo in range(0, count, step)
        ]
        for future in futures:
            future.result(timeout=600)
    os.sync()
    stamp.write_text(f'{count}\n')
    return time.monotonic() - started
