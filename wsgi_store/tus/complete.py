"""The end of an upload: hash it, check the announced hash, commit it as an object.

Python's hash objects cannot be saved, so an upload that arrived in several
``PATCH`` requests (possibly in several processes) is hashed by re-reading its
data file once, at completion. An upload sent in one request from offset 0 (the
common case: tuspy's default, creation-with-upload) was hashed while it was
written and is not read again.

The commit goes through the backend's own two-phase path (``Staged`` +
``commit``): on the filesystem backend the data file *is* the staged temp file
(same filesystem, flushed at every acknowledged offset), so committing is a
rename into its shard plus the shard directory's group-commit flush, and a
dedupe hit just drops it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wsgi_store.backends.base import Backend, PutResult
from wsgi_store.errors import DigestMismatch
from wsgi_store.hashing import new_hasher
from wsgi_store.tus.sessions import DATA, UploadInfo, UploadStore, Writer

if TYPE_CHECKING:
    from wsgi_store.tus.s3uploads import S3UploadStore, S3Writer

READ_CHUNK = 1 << 20


def needed_algorithms(info: UploadInfo, backend: Backend) -> list[str]:
    """The store's algorithm first, then every algorithm a client announced."""
    return list(dict.fromkeys([backend.algorithm, *info.expect]))


def finish(
    uploads: UploadStore | S3UploadStore,
    backend: Backend,
    info: UploadInfo,
    writer: Writer | S3Writer,
    digests: Mapping[str, bytes] | None = None,
) -> dict | None:
    """Store a complete upload (the caller holds its lock); return the result.

    Partial uploads (concatenation) are not stored: their bytes wait for the
    final upload. ``digests`` are hashes computed while the whole upload was
    written in one pass, if any.

    Raises:
        DigestMismatch: the bytes differ from ``file_hash`` / ``Repr-Digest``;
            nothing is stored and the upload is removed.
    """
    if info.result is not None or info.concat == 'partial':
        return info.result
    algorithms = needed_algorithms(info, backend)
    on_s3 = not isinstance(writer, Writer)  # S3Writer: the state is in the bucket
    if digests is None or any(a not in digests for a in algorithms):
        digests = writer.digest(algorithms) if on_s3 else hash_fd(writer.fd, algorithms)
    size = writer.offset
    for algorithm, hex_digest in info.expect.items():
        if digests[algorithm].hex() != hex_digest:
            uploads.remove(info.id, wait=0, held=True)
            raise DigestMismatch(
                f'the upload does not match the {algorithm} announced at '
                'creation; nothing was stored and the upload was removed',
                expected=hex_digest,
                actual=digests[algorithm].hex(),
                algorithm=algorithm,
            )
    info.pending_hash = digests[backend.algorithm].hex()
    uploads.save(info)
    if on_s3:
        result = writer.store_object(digests)
    else:
        result = commit_data(backend, uploads.path(info.id, DATA), writer.fd, digests)
    info.result = {'hash': result.hash, 'size': size, 'created': result.created}
    info.pending_hash = None
    uploads.save(info)
    return info.result


def commit_data(
    backend: Backend, path: str, fd: int, digests: Mapping[str, bytes]
) -> PutResult:
    """Turn the flushed data file into an object through the backend's commit."""
    return backend.commit_file(path, fd, dict(digests))


def hash_fd(fd: int, algorithms: list[str]) -> dict[str, bytes]:
    """Hash a whole file by descriptor (positional reads; the offset is untouched)."""
    hashers = {name: new_hasher(name) for name in algorithms}
    updates = [h.update for h in hashers.values()]
    position = 0
    while chunk := os.pread(fd, READ_CHUNK, position):
        position += len(chunk)
        for update in updates:
            update(chunk)
    return {name: h.digest() for name, h in hashers.items()}


def concatenate(sources: list[str], writer: Writer) -> None:
    """Append the data files of complete partial uploads, in order, then commit."""
    for path in sources:
        with open(path, 'rb') as src:
            size = os.fstat(src.fileno()).st_size
            copied = 0
            while copied < size:
                done = _copy(src.fileno(), writer, copied, size - copied)
                if done <= 0:
                    break
                copied += done
    writer.commit()


def _copy(src: int, writer: Writer, position: int, count: int) -> int:
    target = writer.offset + writer.written
    try:
        done = os.copy_file_range(src, writer.fd, min(count, 1 << 30), position, target)
    except OSError:
        chunk = os.pread(src, min(count, READ_CHUNK), position)
        writer.write(memoryview(chunk))
        return len(chunk)
    writer.written += done
    return done
