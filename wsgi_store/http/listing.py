"""Listing and batch lookups: ``GET /files`` and ``POST /files/missing``.

``GET /files?after=H&limit=N`` pages through every stored hash in ascending
order: ``{"hashes": [...], "next": H | null}``; pass ``next`` as ``after`` to
get the following page, ``null`` means the listing is complete.

``POST /files/missing`` takes a JSON array of up to :data:`MAX_LOOKUP` hashes
(any Content-Type; the body is parsed as JSON) and answers
``{"missing": [...]}``: the ones the store lacks, lowercase, in request order,
each once.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import falcon

from wsgi_store.backends.base import Backend
from wsgi_store.config import Config
from wsgi_store.errors import BadRequest, InvalidHash, TooLarge
from wsgi_store.http import bodyfile
from wsgi_store.http.resources import ObjectService
from wsgi_store.http.uploads import BodyReader, body_length

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_LOOKUP = 10_000
READ_CHUNK = 64 * 1024
# Backends where each lookup is a network round trip are asked concurrently.
REMOTE_LOOKUP_THREADS = 16
_HEX_DIGITS = frozenset('0123456789abcdef')


def parse_limit(value: object) -> int:
    """The page size from the ``limit`` parameter (capped at ``MAX_LIMIT``)."""
    if value is None:
        return DEFAULT_LIMIT
    if not isinstance(value, str):
        raise BadRequest('the limit parameter is given more than once')
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadRequest(f'limit must be a positive integer, not {value[:40]!r}')
    limit = int(value)
    if limit < 1:
        raise BadRequest('limit must be at least 1')
    return min(limit, MAX_LIMIT)


def parse_after(value: object, hex_length: int) -> str:
    """The ``after`` cursor: empty, or up to ``hex_length`` hex digits."""
    if value is None:
        return ''
    if not isinstance(value, str):
        raise BadRequest('the after parameter is given more than once')
    lowered = value.lower()
    if len(lowered) > hex_length or not _HEX_DIGITS.issuperset(lowered):
        raise BadRequest(
            f'after must be a hash or a prefix of one: up to {hex_length} hex digits'
        )
    return lowered


def list_page(backend: Backend, after: str, limit: int) -> dict[str, object]:
    """One page of the listing: up to ``limit`` hashes after ``after``."""
    source = backend.iter_hashes(after)
    try:
        page = list(itertools.islice(source, limit + 1))
    finally:
        close = getattr(source, 'close', None)
        if close is not None:
            close()  # stop a paginating backend from fetching further pages
    more = len(page) > limit
    del page[limit:]
    return {'hashes': page, 'next': page[-1] if more else None}


def read_json_body(
    req: falcon.Request, cap: int, config: Config | None = None
) -> object:
    """Read the whole body (never more than ``cap`` bytes) and parse it as JSON.

    Behind ``nginx-config --body-offload`` nginx sends no body but names the
    file it wrote (:mod:`wsgi_store.http.bodyfile`): read that instead.
    """
    path = bodyfile.offered(req, config) if config is not None else None
    if path is None:
        return _parse_json(req.stream, body_length(req), cap)
    assert config is not None and config.nginx_body_dir is not None
    fd, size = bodyfile.open_body(path, config.nginx_body_dir)
    try:
        return _parse_json(bodyfile.FileBody(fd), size, cap)
    finally:
        os.close(fd)


def _parse_json(stream: object, length: int | None, cap: int) -> object:
    if length is not None and length > cap:
        raise TooLarge(f'the body exceeds the limit of {cap} bytes', limit=cap)
    reader = BodyReader(stream, length, cap)
    parts = []
    while chunk := reader.read(READ_CHUNK):
        parts.append(chunk)
    try:
        return json.loads(b''.join(parts))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest('the body must be a JSON array of hashes') from None


def parse_hashes(doc: object, service: ObjectService) -> list[str]:
    """Validate the lookup list; normalised, duplicates dropped, order kept."""
    if not isinstance(doc, list):
        raise BadRequest('the body must be a JSON array of hashes')
    if len(doc) > MAX_LOOKUP:
        raise TooLarge(
            f'at most {MAX_LOOKUP} hashes per request, got {len(doc)}',
            limit=MAX_LOOKUP,
        )
    hashes: dict[str, None] = {}
    for index, item in enumerate(doc):
        if not isinstance(item, str):
            raise InvalidHash(f'item {index} is not a string')
        try:
            hashes[service.hash_from(item)] = None
        except InvalidHash as exc:
            raise InvalidHash(f'item {index}: {exc.detail}') from None
    return list(hashes)


def find_missing(backend: Backend, hashes: Iterable[str]) -> list[str]:
    """The hashes ``backend`` does not hold, in the given order."""
    hashes = list(hashes)
    if not backend.remote_lookups or len(hashes) < 2:
        return [h for h in hashes if not backend.exists(h)]
    with ThreadPoolExecutor(min(REMOTE_LOOKUP_THREADS, len(hashes))) as pool:
        present = list(pool.map(backend.exists, hashes))
    return [h for h, here in zip(hashes, present, strict=True) if not here]


def _json(resp: falcon.Response, doc: object) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(doc, separators=(',', ':')) + '\n'


class FilesResource:
    """``/files``: upload without naming the hash (POST) and list (GET)."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.service.upload(req, resp)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = parse_limit(req.params.get('limit'))
        after = parse_after(req.params.get('after'), self.service.hex_length)
        _json(resp, list_page(self.service.backend, after, limit))

    on_head = on_get


class MissingResource:
    """``/files/missing``: which of these hashes does the store lack? (POST)."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service
        # Room for pretty-printed JSON: quotes, comma, newline and indentation.
        self.max_body = MAX_LOOKUP * (service.hex_length + 16) + 4096

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = read_json_body(req, self.max_body, self.service.config)
        hashes = parse_hashes(doc, self.service)
        _json(resp, {'missing': find_missing(self.service.backend, hashes)})
