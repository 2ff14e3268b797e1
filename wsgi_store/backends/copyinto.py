"""The upload engine for sources with ``readinto``: reused buffers, two cores.

Each chunk is received into one of two reused buffers, then hashed and written
from that same memory: no ``bytes`` object per chunk, no copy. For a body of
more than one chunk, hashing and writing run on a helper thread while the next
chunk is received into the other buffer, and hashing and writing run on two
helpers at once (hashlib and ``os.write`` release the GIL, and so does
``recv_into``). At most one chunk is in the helpers' hands per upload, so the
hashers and the file see the chunks in order; a buffer is refilled only after
its chunk is hashed and written.

NOTE: whatever happens (a short body, a limit, a client gone), the helper's
chunk is waited for before returning: the caller closes the file descriptor
the helper writes to, and a number reused by another open must never be
written by a late helper.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from wsgi_store.errors import IncompleteBody, StoreError, TooLarge

HELPERS = 4  # per process: each large upload in flight uses two at a time
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


class SourceError(IncompleteBody):
    """Reading the request body failed (the client went away or broke framing)."""


def check_limit(size: int, max_bytes: int) -> None:
    """Refuse (413) once more than ``max_bytes`` arrived; 0 = unlimited."""
    if max_bytes and size > max_bytes:
        raise TooLarge(
            f'the body exceeds the limit of {max_bytes} bytes', limit=max_bytes
        )


def _helpers() -> ThreadPoolExecutor:
    # Created on first use in each process: threads do not survive a fork.
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(HELPERS, thread_name_prefix='upload-hash')
            _pool_pid = os.getpid()
        return _pool


def _consume(
    updates: list[Callable[[Any], None]],
    write: Callable[[memoryview], object],
    chunk: memoryview,
) -> None:
    for update in updates:
        update(chunk)
    write(chunk)


def _hash(updates: list[Callable[[Any], None]], chunk: memoryview) -> None:
    for update in updates:
        update(chunk)


def _wait(futures: list[Future[None]]) -> None:
    """Wait for every future, then raise the first error (none left running)."""
    for future in futures:
        future.exception()
    for future in futures:
        future.result()
    futures.clear()


def _fill(readinto: Callable[[memoryview], int], view: memoryview, size: int) -> int:
    """Read until ``view`` is full or the source ends; bytes read."""
    got = 0
    while got < len(view):
        try:
            n = readinto(view[got:])
        except StoreError:
            raise
        except Exception as exc:
            raise SourceError(
                f'the request body could not be read: {type(exc).__name__}',
                received=size + got,
            ) from exc
        if not n:
            break
        got += n
    return got


def copy_into(
    readinto: Callable[[memoryview], int],
    write: Callable[[memoryview], object],
    updates: list[Callable[[Any], None]],
    chunk_bytes: int,
    max_bytes: int,
    length: int | None,
) -> int:
    """Receive, hash and write a whole body; the number of bytes."""
    overlap = length is None or length > chunk_bytes
    # A small body gets a buffer of its own size (+1 to see an overlong one):
    # zero-filling a whole chunk for a 1 KiB upload costs more than the copy.
    first = chunk_bytes if length is None or overlap else min(chunk_bytes, length + 1)
    buffers = [memoryview(bytearray(first))]
    if overlap:
        buffers.append(memoryview(bytearray(chunk_bytes)))
    size, turn = 0, 0
    pending: list[Future[None]] = []  # the previous chunk's hashing and writing
    try:
        while True:
            view = buffers[turn]
            got = _fill(readinto, view, size)
            if not got:
                break
            size += got
            check_limit(size, max_bytes)
            chunk = view[:got]
            if not overlap:
                _consume(updates, write, chunk)
                continue
            _wait(pending)  # in order, and the other buffer is free again
            pool = _helpers()
            pending = [
                pool.submit(_hash, updates, chunk),
                pool.submit(write, chunk),
            ]
            turn ^= 1
        _wait(pending)
    finally:
        for future in pending:
            future.exception()  # wait; the error already raising wins
    return size
