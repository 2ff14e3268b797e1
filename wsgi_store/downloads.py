"""GET and HEAD of an object: validators, ranges, offload and verify-on-read."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

import falcon

from .backends.base import Backend, Download
from .config import Config
from .digests import new_hasher
from .errors import RangeNotSatisfiable

logger = logging.getLogger(__name__)

INLINE_LIMIT = 64 * 1024  # below this, returning bytes beats sendfile's setup
CACHE_CONTROL = 'public, max-age=31536000, immutable'


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into ``(start, end_exclusive)``.

    Returns None (serve the whole object) for an absent, malformed or
    multi-range header, as RFC 9110 allows; raises ``RangeNotSatisfiable``
    when the range lies outside the object.
    """
    if not header:
        return None
    unit, _, spec = header.partition('=')
    if unit.strip().lower() != 'bytes' or ',' in spec:
        return None
    first, dash, last = spec.strip().partition('-')
    if not dash or not (_digits(first) or _digits(last)):
        return None
    if (first and not _digits(first)) or (last and not _digits(last)):
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable('a zero-length suffix range', size=size)
        return max(0, size - length), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(f'the object has {size} bytes', size=size)
    return start, end


def _digits(text: str) -> bool:
    # NOTE: str.isdigit() is True for '²' (a header byte 0xB2 decoded as
    # latin-1), which int() refuses: ASCII digits only.
    return text.isascii() and text.isdigit()


def _requested_range(
    req: falcon.Request, etag: str, size: int
) -> tuple[int, int] | None:
    header = req.get_header('Range')
    if header is None:
        return None
    if_range = req.get_header('If-Range')
    if if_range and if_range.strip() != etag:
        return None  # the client's copy is another version: send it whole
    return parse_range(header, size)


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison of an If-None-Match list against our strong ETag."""
    if not header:
        return False
    if header.strip() == '*':
        return True
    tags = (t.strip().removeprefix('W/') for t in header.split(','))
    return etag in tags


def send(
    req: falcon.Request,
    resp: falcon.Response,
    backend: Backend,
    hex_hash: str,
    config: Config,
) -> None:
    """Answer a GET or HEAD for ``hex_hash`` (already validated)."""
    head = req.method == 'HEAD'
    etag = f'"{hex_hash}"'
    inline = 0 if head or config.verify_reads else INLINE_LIMIT
    dl = backend.get(hex_hash, inline_limit=inline)
    try:
        _send(req, resp, backend, dl, etag, config, head)
    except BaseException:
        dl.close()
        raise


def _send(
    req: falcon.Request,
    resp: falcon.Response,
    backend: Backend,
    dl: Download,
    etag: str,
    config: Config,
    head: bool,
) -> None:
    size = dl.info.size
    resp.set_header('ETag', etag)
    resp.set_header('Cache-Control', CACHE_CONTROL)
    resp.set_header('Accept-Ranges', 'bytes')
    if etag_matches(req.get_header('If-None-Match'), etag):
        resp.status = falcon.HTTP_304
        dl.close()
        return
    resp.content_type = 'application/octet-stream'
    rng = _requested_range(req, etag, size)
    start, end = rng if rng else (0, size)
    if rng:
        resp.status = falcon.HTTP_206
        resp.set_header('Content-Range', f'bytes {start}-{end - 1}/{size}')
    resp.content_length = end - start
    if head:
        dl.close()
        return
    if config.accel_redirect and dl.data is None and not config.verify_reads:
        dl.close()
        hex_hash = dl.info.hash
        resp.set_header(
            'X-Accel-Redirect',
            f'{config.accel_redirect.rstrip("/")}/{hex_hash[:2]}/{hex_hash}',
        )
        resp.content_length = None
        return
    _body(resp, backend, dl, start, end, config)


def _body(
    resp: falcon.Response,
    backend: Backend,
    dl: Download,
    start: int,
    end: int,
    config: Config,
) -> None:
    whole = start == 0 and end == dl.info.size
    if dl.data is not None:
        resp.data = dl.data if whole else dl.data[start:end]
        return
    if config.verify_reads:
        if dl.file is not None:
            dl.file.close()
        resp.stream = VerifyingReader(backend, dl.info.hash, start, end, config)
        return
    if dl.file is not None and whole:
        resp.stream = dl.file  # a real file: gunicorn sends it with sendfile
        return
    if dl.file is not None:
        dl.file.seek(start)
        resp.stream = _bounded(dl.file, end - start, config.chunk_bytes)
        return
    resp.stream = _bounded(
        backend.open(dl.info.hash, start, end), end - start, config.chunk_bytes
    )


def _bounded(f: IO[bytes], length: int, chunk: int) -> Iterator[bytes]:
    try:
        while length > 0:
            data = f.read(min(chunk, length))
            if not data:
                break
            length -= len(data)
            yield data
    finally:
        f.close()


class VerifyingReader:
    """Stream an object while re-hashing all of it; cut the transfer on mismatch.

    The last chunk is held back until the digest is checked, so a corrupt object
    never reaches the client complete: it sees a short, broken transfer.
    """

    def __init__(
        self, backend: Backend, hex_hash: str, start: int, end: int, config: Config
    ) -> None:
        self.backend, self.hash = backend, hex_hash
        self.start, self.end, self.chunk = start, end, config.chunk_bytes

    def __iter__(self) -> Iterator[bytes]:
        hasher = new_hasher(self.backend.algorithm)
        pos, pending = 0, b''
        with self.backend.open(self.hash) as f:
            while data := f.read(self.chunk):
                hasher.update(data)
                lo, hi = max(self.start - pos, 0), min(self.end - pos, len(data))
                pos += len(data)
                if lo < hi:
                    if pending:
                        yield pending
                    pending = data[lo:hi]
        if hasher.hexdigest() != self.hash:
            logger.error(
                'object %s is corrupt: its bytes hash to %s; download cut off',
                self.hash,
                hasher.hexdigest(),
            )
            raise OSError(f'object {self.hash} failed verification')
        if pending:
            yield pending
