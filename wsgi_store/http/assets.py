"""``/static/{name}``: the upload page's own script and style sheet.

A fixed allow-list (no path from the request ever reaches the filesystem), read
once from the installed package. Open without a token (the page must load
before anyone has typed one), cached for a year: the page links each asset
with ``?v=TAG`` (its ETag), so a new release is a new URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

import falcon

from wsgi_store.errors import NotFound

# name -> Content-Type: the only files this route serves.
ALLOWED = {
    'upload.js': 'text/javascript; charset=utf-8',
    'upload.css': 'text/css; charset=utf-8',
}
PAGE = 'upload.html'
YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, type and strong validator."""

    body: bytes
    content_type: str
    tag: str  # the ETag's opaque part (also the page's ?v= cache buster)


@cache
def asset(name: str) -> Asset:
    """The packaged file ``name`` (``upload.html`` or one of :data:`ALLOWED`)."""
    body = resources.files('wsgi_store').joinpath('static', name).read_bytes()
    kind = ALLOWED.get(name, 'text/html; charset=utf-8')
    return Asset(body, kind, hashlib.sha256(body).hexdigest()[:20])


class StaticResource:
    """``GET``/``HEAD`` ``/static/{name}`` for the names in :data:`ALLOWED`."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in ALLOWED:
            raise NotFound(f'no static file {name!r}')
        found = asset(name)
        resp.etag = f'"{found.tag}"'
        resp.cache_control = [f'max-age={YEAR}', 'immutable']
        resp.set_header('X-Content-Type-Options', 'nosniff')
        matches = req.if_none_match or []
        if any(str(tag) in (found.tag, '*') for tag in matches):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = found.content_type
        resp.data = found.body

    on_head = on_get
