"""The upload engine: read a body to its end, hash it and hand it to a writer.

Backends call :func:`copy_stream` to stage an upload: every chunk is hashed
under each algorithm asked for and written in the same pass. A source with
``readinto`` goes through :mod:`.copyinto` (reused buffers, hashing and writing
overlapped with receiving); anything else is read with ``read(n)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from wsgi_store.backends.copyinto import SourceError, check_limit, copy_into
from wsgi_store.errors import IncompleteBody, StoreError
from wsgi_store.hashing import Readable, new_hasher


@dataclass
class CopyResult:
    size: int
    digests: dict[str, bytes]  # hashlib name -> raw digest

    def hexdigest(self, algorithm: str) -> str:
        return self.digests[algorithm].hex()


def copy_stream(
    source: Readable,
    write: Callable[[memoryview], object],
    algorithms: Iterable[str],
    *,
    chunk_bytes: int,
    max_bytes: int = 0,
    length: int | None = None,
) -> CopyResult:
    """Read ``source`` to its end, hash every chunk and hand it to ``write``.

    A source with ``readinto`` is read into reused buffers (no copy per chunk),
    and a large body is hashed and written by a helper thread while the next
    chunk arrives (:mod:`.copyinto`).

    Args:
        source: the request body (or any ``read(n)`` object).
        write: consumes each chunk; its exceptions propagate untouched.
        algorithms: hashlib names to compute (the store's first).
        chunk_bytes: how much to ask for per read.
        max_bytes: refuse (413) once more than this arrives; 0 = unlimited.
        length: the announced Content-Length; fewer bytes is a 400.
    """
    hashers = {name: new_hasher(name) for name in dict.fromkeys(algorithms)}
    updates = [h.update for h in hashers.values()]
    readinto = getattr(source, 'readinto', None)
    if readinto is not None:
        size = copy_into(readinto, write, updates, chunk_bytes, max_bytes, length)
    else:
        size = _copy_reads(source, write, updates, chunk_bytes, max_bytes)
    if length is not None and size != length:
        raise IncompleteBody(
            f'the body ended after {size} of the {length} announced bytes',
            received=size,
            expected=length,
        )
    return CopyResult(size, {name: h.digest() for name, h in hashers.items()})


def _copy_reads(
    source: Readable,
    write: Callable[[memoryview], object],
    updates: list[Callable[[Any], None]],
    chunk_bytes: int,
    max_bytes: int,
) -> int:
    size = 0
    while True:
        try:
            data = source.read(chunk_bytes)
        except StoreError:
            raise
        except Exception as exc:
            raise SourceError(
                f'the request body could not be read: {type(exc).__name__}',
                received=size,
            ) from exc
        if not data:
            break
        size += len(data)
        check_limit(size, max_bytes)
        view = memoryview(data)
        for update in updates:
            update(view)
        write(view)
    return size
