"""The disk's limits, measured with the store's own write pattern in plain Python.

* :func:`durable_loop`: one thread writing 1 KiB objects the safe way (temp file,
  write, fsync, rename into a shard, fsync the shard directory): files per second.
* :func:`write_file`: one large file written in 1 MiB chunks, optionally fsync-ed
  (then renamed and the directory fsync-ed): MB (10**6) per second.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

MiB = 1 << 20


def durable_loop(root: Path, seconds: float, size: int = 1024) -> tuple[float, int]:
    """Files per second of the single-thread write+fsync+rename+fsync(dir) loop,
    and how many files it wrote."""
    tmp, shards = root / 'tmp', [root / f'{i:02x}' for i in range(256)]
    tmp.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        shard.mkdir(exist_ok=True)
    data = b'r' * size
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        name = f'{count:016x}'
        shard = shards[count % 256]
        temp = tmp / name
        fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(temp, shard / name)
        dfd = os.open(shard, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        count += 1
    rate = count / (time.perf_counter() - started)
    shutil.rmtree(root, ignore_errors=True)
    return rate, count


def write_file(root: Path, size: int, fsync: bool = True) -> float:
    """MB/s writing ``size`` bytes (then fsync + rename + fsync(dir) if ``fsync``)."""
    root.mkdir(parents=True, exist_ok=True)
    chunk = bytes(MiB)
    temp, final = root / 'big.tmp', root / 'big'
    started = time.perf_counter()
    fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o640)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, MiB)])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    if fsync:
        dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    rate = size / (time.perf_counter() - started) / 1e6
    final.unlink()
    return rate
