"""Turn an upload request (raw, chunked or multipart) into a backend put.

The body is read from ``req.stream`` under our own byte accounting, never from
Falcon's ``bounded_stream`` (which reads a chunked body as empty): with a
Content-Length we read exactly that many bytes and refuse a short body; without
one (chunked) we read to the end that gunicorn's ``wsgi.input_terminated``
guarantees.

Digests (RFC 9530): ``Content-Digest`` and ``Repr-Digest`` describe the request
content. For a raw body that is the stored object; for ``multipart/form-data``
it is the whole multipart document (boundaries, part headers, every part), so
both headers are checked over the entire body as received (no content coding
is applied, so the representation and the content are the same bytes). The
file part's own hash is announced with ``?file_hash=`` (or the path).
"""

from __future__ import annotations

from collections.abc import Sequence

import falcon
from falcon.media.multipart import (
    MultipartForm,
    MultipartParseError,
    MultipartParseOptions,
)

from wsgi_store.backends.base import Backend, PutResult, Staged, check_expectations
from wsgi_store.config import Config
from wsgi_store.errors import BadRequest, DigestMismatch, IncompleteBody, TooLarge
from wsgi_store.hashing import (
    Expectation,
    hex_length,
    new_hasher,
    normalize_hash,
    parse_digest_header,
)
from wsgi_store.http import bodyfile
from wsgi_store.http.directbody import DirectReader, direct_reader

UNBOUNDED = 1 << 62
DIGEST_HEADERS = ('Content-Digest', 'Repr-Digest')


class BodyReader:
    """``req.stream`` with the Content-Length and the size limit enforced.

    With a :class:`~.directbody.DirectReader` it also has ``readinto``: the body
    then lands in the caller's buffer with no copy through gunicorn's buffers
    (:func:`~wsgi_store.backends.streaming.copy_stream` uses it). ``read`` stays
    usable either way.
    """

    def __init__(
        self,
        stream: object,
        length: int | None,
        max_bytes: int,
        direct: DirectReader | None = None,
    ) -> None:
        self._read = stream.read  # type: ignore[attr-defined]
        self._stream = stream
        self.length = length
        self.max_bytes = max_bytes
        self.received = 0
        if direct is not None:
            self._direct = direct
            self.readinto = self._readinto

    def _readinto(self, view: memoryview) -> int:
        got = self._direct.readinto(view)
        self.received += got
        _credit(self._stream, got)
        self._check(got)
        return got

    def read(self, size: int = -1) -> bytes:
        if self.length is not None:
            left = self.length - self.received
            if left <= 0:
                return b''
            size = left if size is None or size < 0 else min(size, left)
        data = self._read(size)
        self.received += len(data)
        self._check(len(data))
        return data

    def _check(self, got: int) -> None:
        if self.max_bytes and self.received > self.max_bytes:
            raise TooLarge(
                f'the body exceeds the limit of {self.max_bytes} bytes',
                limit=self.max_bytes,
            )
        if not got and self.length is not None and self.received < self.length:
            raise IncompleteBody(
                f'the body ended after {self.received} of the {self.length} announced '
                'bytes',
                received=self.received,
                expected=self.length,
            )


def _credit(stream: object, count: int) -> None:
    # NOTE: the metrics middleware wraps req.stream to count the bytes the app
    # reads; bytes read past it (straight from the socket) are credited here.
    counted = getattr(stream, 'count', None)
    if isinstance(counted, int) and not isinstance(counted, bool):
        stream.count = counted + count  # type: ignore[attr-defined]


def body_length(req: falcon.Request) -> int | None:
    """The body's length: Content-Length, None when framed otherwise (chunked).

    With no length and no framing, RFC 9112 says the body is empty: 0.
    """
    length = req.content_length
    chunked = 'chunked' in (req.get_header('Transfer-Encoding') or '').lower()
    if length is None and not (chunked or req.env.get('wsgi.input_terminated')):
        return 0
    return length


def body_reader(req: falcon.Request, config: Config) -> BodyReader:
    """Check the announced size and wrap the request stream."""
    length = body_length(req)
    limit = config.max_upload_bytes
    if limit and length is not None and length > limit:
        raise TooLarge(
            f'Content-Length {length} exceeds the limit of {limit} bytes', limit=limit
        )
    direct = direct_reader(req.env.get('wsgi.input'), length)
    return BodyReader(req.stream, length, limit, direct)


def expectations(
    req: falcon.Request, algorithm: str, hex_len: int, path_hash: str | None
) -> list[Expectation]:
    """Collect every digest the client announced for this upload."""
    found: list[Expectation] = []
    given = path_hash if path_hash is not None else req.params.get('file_hash')
    if given is not None:
        hex_hash = normalize_hash(given, hex_len)
        source = 'the URL path' if path_hash is not None else 'the file_hash parameter'
        found.append(Expectation(algorithm, bytes.fromhex(hex_hash), source))
    for header in DIGEST_HEADERS:
        value = req.get_header(header)
        if value:
            found.extend(parse_digest_header(value, header))
    return found


def receive(
    req: falcon.Request, backend: Backend, config: Config, path_hash: str | None = None
) -> PutResult:
    """Store the request's body (or its file part) and return the result."""
    hex_len = hex_length(backend.algorithm)
    expect = expectations(req, backend.algorithm, hex_len, path_hash)
    body_file = bodyfile.offered(req, config)
    if body_file is not None:  # nginx already wrote it (nginx-config --body-offload)
        return bodyfile.receive(req, body_file, backend, config, expect)
    body = body_reader(req, config)
    if req.content_type and req.content_type.lower().startswith('multipart/form-data'):
        # RFC 9530: the headers cover the whole request content, not the part.
        of_part = [e for e in expect if e.source not in DIGEST_HEADERS]
        of_body = [e for e in expect if e.source in DIGEST_HEADERS]
        return _receive_multipart(
            req, HashingReader(body, of_body), backend, config, of_part
        )
    # The length lets a small body skip the overlapped (threaded) copy path.
    return backend.put(
        body, expect=expect, max_bytes=config.max_upload_bytes, length=body.length
    )


class HashingReader:
    """A body reader that also hashes everything read, for ``Content-Digest``."""

    def __init__(self, body: BodyReader, expect: Sequence[Expectation]) -> None:
        self.body = body
        self.length = body.length
        self.expect = list(expect)
        algorithms = dict.fromkeys(e.algorithm for e in self.expect)
        self._hashers = {name: new_hasher(name) for name in algorithms}

    def read(self, size: int = -1) -> bytes:
        data = self.body.read(size)
        for hasher in self._hashers.values():
            hasher.update(data)
        return data

    def check(self, chunk_bytes: int) -> None:
        """Read what is left (the epilogue) and compare the announced digests."""
        if not self.expect:
            return
        _drain(self, chunk_bytes)
        for exp in self.expect:
            got = self._hashers[exp.algorithm].digest()
            if got != exp.digest:
                raise DigestMismatch(
                    f'the request content (the whole multipart body) does not '
                    f'match the {exp.algorithm} given in {exp.source}',
                    expected=exp.digest.hex(),
                    actual=got.hex(),
                    algorithm=exp.algorithm,
                )


def _receive_multipart(
    req: falcon.Request,
    body: HashingReader,
    backend: Backend,
    config: Config,
    expect: Sequence[Expectation],
) -> PutResult:
    """Stage the ``file`` part (or the only file part), draining the others."""
    boundary = _boundary(req.content_type or '')
    options = MultipartParseOptions()
    options.max_body_part_count = config.max_multipart_parts
    options.max_body_part_headers_size = config.max_multipart_header_bytes
    form = MultipartForm(body, boundary, body.length or UNBOUNDED, options)
    extra = [e.algorithm for e in expect if e.algorithm != backend.algorithm]
    chosen: Staged | None = None
    chosen_name: str | None = None
    ambiguous = False
    try:
        for part in form:
            name, is_file = part.name, part.filename is not None
            if name != 'file' and not is_file:
                _drain(part.stream, config.chunk_bytes)
                continue
            if chosen is not None and chosen_name == 'file' == name:
                raise BadRequest('the form has more than one "file" part')
            if chosen is None or (name == 'file' and chosen_name != 'file'):
                if chosen is not None:
                    backend.discard(chosen)
                chosen = backend.stage(part.stream, extra_algorithms=extra)
                chosen_name = name
            else:
                ambiguous = ambiguous or chosen_name != 'file'
                _drain(part.stream, config.chunk_bytes)
        if chosen is None:
            raise BadRequest('the form has no file part (send it as field "file")')
        if ambiguous and chosen_name != 'file':
            raise BadRequest(
                'the form has several file parts; name the one to store "file"'
            )
        body.check(config.chunk_bytes)
        check_expectations(chosen, expect, backend.algorithm)
        return backend.commit(chosen)
    except MultipartParseError as exc:
        raise BadRequest(f'malformed multipart body: {exc.description}') from None
    finally:
        if chosen is not None and not chosen.done:
            backend.discard(chosen)


def _boundary(content_type: str) -> bytes:
    _, params = falcon.parse_header(content_type)
    boundary = params.get('boundary', '').rstrip()
    if not 1 <= len(boundary) <= 70:
        raise BadRequest('multipart/form-data needs a boundary of 1 to 70 characters')
    return boundary.encode('latin-1')


def _drain(stream: object, chunk: int) -> None:
    read = stream.read  # type: ignore[attr-defined]
    while read(chunk):
        pass
