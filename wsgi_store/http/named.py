"""``PUT /NAME``: the upload ``curl -T photo.jpg http://host/`` sends.

curl turns ``-T FILE URL/`` into ``PUT /FILE``. The body is stored exactly as
``POST /`` stores it (same upload engine, limits and digest checks); the
answer is the one ``POST /`` gives, with
``Location: /files/HASH?filename=NAME`` so the name travels with the link.

NAME rules: one path segment (the router never gives a ``/``), 1 to
:data:`MAX_NAME_BYTES` bytes of UTF-8, not ``.`` or ``..``, no control
characters (C0, C1), bidirectional overrides, backslash or percent-escape
left after decoding (``%252e`` arrives as ``%2e``), and not a reserved route
name (compared without case: ``PUT /FILES`` is not a file called FILES).
Reserved names that have a route (``/files``, ``/healthz`` ...) never reach
this resource; the others (``/metrics`` when metrics are off, ``/uploads``,
``/static``) are refused here.
"""

from __future__ import annotations

import re

import falcon

from wsgi_store.errors import BadRequest
from wsgi_store.http.disposition import BIDI

MAX_NAME_BYTES = 255
# Top-level names the service uses or keeps for itself.
RESERVED = frozenset(
    {
        'files',
        'healthz',
        'readyz',
        'metrics',
        'openapi.json',
        'uploads',
        'index.html',
        'favicon.ico',
        'static',
    }
)
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f\\/]')
_ESCAPE = re.compile(r'%[0-9A-Fa-f]{2}')


def check_name(name: str, *, top_level: bool = True) -> str:
    """Return ``name`` when it can name an upload, else raise :class:`BadRequest`."""
    if name in ('', '.', '..'):
        raise BadRequest(f'{name!r} cannot name a file')
    if len(name.encode('utf-8', 'surrogatepass')) > MAX_NAME_BYTES:
        raise BadRequest(f'a file name is at most {MAX_NAME_BYTES} bytes')
    if _FORBIDDEN.search(name):
        raise BadRequest('a file name has no control characters, "/" or "\\"')
    if BIDI.search(name):
        raise BadRequest('a file name has no bidirectional formatting characters')
    if _ESCAPE.search(name):
        # Encoded twice (%252e): a proxy that decodes again would see another path.
        raise BadRequest('a file name has no percent-escapes once decoded')
    if top_level and name.lower() in RESERVED:
        raise BadRequest(
            f'/{name} is a reserved path, not a file name; upload it with '
            f'PUT /files/{name} or POST /'
        )
    return name


class NamedResource:
    """``/{name}``: exists for PUT only (any other method is a 404)."""

    route_exists_for = frozenset({'PUT'})  # see methods.MethodGuard

    def __init__(self, service: object) -> None:
        self.service = service  # resources.ObjectService

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.service.upload(req, resp, name=check_name(name))  # type: ignore[attr-defined]
