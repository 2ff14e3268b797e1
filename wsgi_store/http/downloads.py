"""GET and HEAD of an object: validators, preconditions, ranges, names, offload.

The semantics live in :mod:`wsgi_store.http.conditional`, :mod:`wsgi_store.http.ranges`
and :mod:`wsgi_store.http.disposition`; this module applies them in RFC 9110's
order and picks how the bytes leave (inline bytes, sendfile, a bounded stream,
nginx's ``X-Accel-Redirect``, or the verifying reader).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

import falcon

from wsgi_store.backends.base import Backend, Download
from wsgi_store.config import Config
from wsgi_store.errors import BadRequest
from wsgi_store.hashing import new_hasher
from wsgi_store.http import conditional, disposition, smallobjects
from wsgi_store.http.ranges import SINGLE, parse_range

logger = logging.getLogger(__name__)

__all__ = ['CACHE_CONTROL', 'VerifyingReader', 'cache_control', 'parse_range', 'send']

INLINE_LIMIT = 64 * 1024  # below this, returning bytes beats sendfile's setup
CACHE_CONTROL = 'public, max-age=31536000, immutable'
# Reads that need a token: a shared cache must never hand them to others.
PRIVATE_CACHE_CONTROL = 'private, max-age=31536000, immutable'
NGINX_MAX_DIGITS = 15  # nginx refuses (416) range numbers near 2**63


def cache_control(config: Config) -> str:
    """``public`` when anyone may read, ``private`` when reads need a token."""
    public = config.tokens_file is None or config.public_read
    return CACHE_CONTROL if public else PRIVATE_CACHE_CONTROL


def download_name(req: falcon.Request) -> tuple[str | None, bool]:
    """``?filename=`` (validated) and whether ``?inline=1`` asks to show it."""
    name = req.params.get('filename')
    if isinstance(name, list):
        raise BadRequest('give filename once')
    inline = req.params.get('inline')
    if inline not in (None, '0', '1'):
        raise BadRequest('inline must be 0 or 1')
    if name is None:
        return None, False
    return disposition.validate_name(name), inline == '1'


def send(
    req: falcon.Request,
    resp: falcon.Response,
    backend: Backend,
    hex_hash: str,
    config: Config,
) -> None:
    """Answer a GET or HEAD for ``hex_hash`` (already validated)."""
    name, inline = download_name(req)
    if req.method == 'HEAD' or config.verify_reads:
        dl = backend.get(hex_hash)
    else:  # small ones from memory after a stat (see smallobjects.py)
        dl = smallobjects.for_backend(backend).get(backend, hex_hash, INLINE_LIMIT)
    try:
        _send(req, resp, backend, dl, config, name, inline)
    except BaseException:
        dl.close()
        raise


def _send(
    req: falcon.Request,
    resp: falcon.Response,
    backend: Backend,
    dl: Download,
    config: Config,
    name: str | None,
    inline: bool,
) -> None:
    info, etag = dl.info, f'"{dl.info.hash}"'
    conditions = conditional.preconditions_in(req.env)
    status = conditional.evaluate(req.method, conditions, etag, info.mtime)
    if status == 412:
        raise conditional.PreconditionFailed()
    rng = None
    range_header = req.get_header('Range') if req.method == 'GET' else None
    if status is None and conditional.if_range_allows(
        conditions.get('If-Range'), etag, info.mtime
    ):
        rng = parse_range(range_header, info.size)  # 416 before any header is set
    # NOTE: validators and caching only on 200/206/304, never on an error.
    resp.set_header('ETag', etag)
    resp.set_header('Last-Modified', conditional.http_date(info.mtime))
    resp.set_header('Cache-Control', cache_control(config))
    if status == 304:
        resp.status = falcon.HTTP_304
        dl.close()
        return
    resp.content_type = disposition.DEFAULT_TYPE
    if name:
        resp.content_type = disposition.content_type(name)
        # The type comes from a name anyone can put in a link: never let a
        # browser upgrade it by sniffing (text/plain rendered as HTML).
        resp.set_header('X-Content-Type-Options', 'nosniff')
        resp.set_header(
            'Content-Disposition', disposition.content_disposition(name, inline=inline)
        )
    start, end = rng if rng else (0, info.size)
    if rng:
        resp.status = falcon.HTTP_206
        resp.set_header('Content-Range', f'bytes {start}-{end - 1}/{info.size}')
    resp.content_length = end - start
    if req.method == 'HEAD':
        dl.close()
        resp.set_header('Accept-Ranges', 'bytes')
        return
    if _nginx_may_serve(config, dl, conditions, range_header, rng):
        _accel(resp, dl, config, ranged=rng is not None)
        return
    resp.set_header('Accept-Ranges', 'bytes')
    _body(resp, backend, dl, start, end, config)


def _nginx_may_serve(
    config: Config,
    dl: Download,
    conditions: dict[str, str],
    range_header: str | None,
    rng: tuple[int, int] | None,
) -> bool:
    """True when nginx, re-reading the request, answers exactly as the app would.

    nginx re-applies the client's Range and preconditions against its own
    validators (it has no ETag of ours), so only requests with no precondition
    and with no Range, or one plain single range the app honoured, go to it.
    """
    if not config.accel_redirect or dl.data is not None or config.verify_reads:
        return False
    if conditions:
        return False
    if range_header is None:
        return True
    match = SINGLE.fullmatch(range_header)
    return (
        rng is not None
        and match is not None
        and all(len(g or '') <= NGINX_MAX_DIGITS for g in match.groups())
    )


def _accel(
    resp: falcon.Response, dl: Download, config: Config, *, ranged: bool
) -> None:
    """Let nginx send the file: it sets Content-Range (re-reading the Range)."""
    dl.close()
    if ranged:  # nginx adds Accept-Ranges to its 200s only; ours passes through
        resp.set_header('Accept-Ranges', 'bytes')
    hex_hash = dl.info.hash
    prefix = config.accel_redirect.rstrip('/')
    resp.set_header('X-Accel-Redirect', f'{prefix}/{hex_hash[:2]}/{hex_hash}')
    resp.status = falcon.HTTP_200
    resp.delete_header('Content-Range')
    resp.content_length = None


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
        # NOTE: verify the file already open: a delete (or replace) of the
        # name after this point must not break a download that has begun.
        resp.stream = VerifyingReader(backend, dl, start, end, config.chunk_bytes)
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

    Reads the file the download opened (``dl.file``) when there is one, so the
    object's name may go away meanwhile; otherwise (S3) opens it once. The last
    chunk is held back until the digest is checked, so a corrupt object never
    reaches the client complete: it sees a short, broken transfer.
    """

    def __init__(
        self, backend: Backend, dl: Download, start: int, end: int, chunk: int
    ) -> None:
        self.backend, self.dl, self.hash = backend, dl, dl.info.hash
        self.start, self.end, self.chunk = start, end, chunk

    def _open(self) -> IO[bytes]:
        if self.dl.file is not None:
            self.dl.file.seek(0)
            return self.dl.file
        return self.backend.open(self.hash)

    def __iter__(self) -> Iterator[bytes]:
        hasher = new_hasher(self.backend.algorithm)
        pos, pending = 0, b''
        with self._open() as f:
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

    def close(self) -> None:
        """Called by the server when the response ends (even unread)."""
        self.dl.close()
