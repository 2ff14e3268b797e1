"""The bytes of small objects recently served, kept per worker (issue 15).

A 1 KiB GET used to cost open + fstat + read + close. Each of those releases
the GIL, and with eight threads busy each release hands the GIL to another
thread and waits to get it back: under load that, not the syscalls, was most of
what a small GET cost beyond a trivial app. Objects are content-addressed, so
the bytes of a hash never change; only whether the object still exists and its
mtime can. A cached GET therefore asks the backend for :meth:`Backend.stat`
(one ``stat``: a deleted object is still a 404, ``Last-Modified`` still the
file's) and answers from memory when the size agrees.

Bounded: objects up to :data:`MAX_OBJECT` bytes, at most :data:`MAX_ENTRIES` of
them (~4 MiB per worker at most), the oldest dropped first. Never used when
reads are verified (``VERIFY_READS``): then every byte is read and hashed.
"""

from __future__ import annotations

import weakref

from wsgi_store.backends.base import Backend, Download

MAX_OBJECT = 4 * 1024
MAX_ENTRIES = 1024


class SmallObjects:
    """A bounded map of object hash to bytes, safe to share between threads."""

    def __init__(self, max_object: int = MAX_OBJECT, max_entries: int = MAX_ENTRIES):
        self.max_object = max_object
        self.max_entries = max_entries
        self._data: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, backend: Backend, hex_hash: str, inline_limit: int) -> Download:
        """``backend.get`` for an answer with a body, from memory when it can be."""
        data = self._data.get(hex_hash)
        if data is not None:
            info = backend.stat(hex_hash)  # NotFound once deleted
            if info.size == len(data):
                return Download(info, data=data)
            self._data.pop(hex_hash, None)
        dl = backend.get(hex_hash, inline_limit=inline_limit)
        if dl.data is not None and len(dl.data) <= self.max_object:
            self._remember(hex_hash, dl.data)
        return dl

    def _remember(self, hex_hash: str, data: bytes) -> None:
        entries = self._data
        while len(entries) >= self.max_entries:
            try:  # the oldest first (dicts keep insertion order)
                del entries[next(iter(entries))]
            except (KeyError, RuntimeError, StopIteration):
                break  # another thread changed it meanwhile: try next time
        entries[hex_hash] = data


_CACHES: weakref.WeakKeyDictionary[Backend, SmallObjects] = weakref.WeakKeyDictionary()


def for_backend(backend: Backend) -> SmallObjects:
    """The cache of ``backend`` (one per backend object, i.e. per app and worker)."""
    cache = _CACHES.get(backend)
    if cache is None:
        cache = _CACHES.setdefault(backend, SmallObjects())
    return cache
