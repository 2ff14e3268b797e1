"""405 answers: one ``Allow`` order everywhere, and a hint saying what to use.

Falcon's own 405 lists methods in its internal order and says nothing about
what would work. :class:`MethodGuard` answers every method a resource lacks
(OPTIONS included: it is not part of the API) before authentication, with
``Allow`` in :data:`ALLOW_ORDER` and a problem detail naming the method and
path to use instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import falcon

from wsgi_store.errors import NotFound

# The one order every Allow header uses.
ALLOW_ORDER = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')
UPLOAD_HINT = (
    'to upload, use POST / or POST /files, or PUT /NAME or PUT /files/NAME '
    '(curl -T FILE URL/)'
)


def allowed_methods(resource: object) -> list[str]:
    """The methods ``resource`` serves, in :data:`ALLOW_ORDER` (never OPTIONS)."""
    only = getattr(resource, 'route_exists_for', None)
    return [
        m
        for m in ALLOW_ORDER
        if m != 'OPTIONS'
        and hasattr(resource, f'on_{m.lower()}')
        and (only is None or m in only)
    ]


def order_allow(methods: Iterable[str]) -> str:
    """An ``Allow`` value in the canonical order (unknown methods last, OPTIONS out)."""
    wanted = [m.strip().upper() for m in methods if m.strip()]
    known = [m for m in ALLOW_ORDER if m in wanted and m != 'OPTIONS']
    rest = sorted({m for m in wanted if m not in ALLOW_ORDER})
    return ', '.join(known + rest)


def method_hint(method: str, path: str, allowed: list[str]) -> str:
    """The 405 detail: what was refused and what to send instead."""
    uses = ', '.join(f'{m} {path}' for m in allowed)
    detail = f'{method} {path} is not allowed; this path accepts {uses}'
    if method in ('PUT', 'POST', 'PATCH'):
        detail += f'; {UPLOAD_HINT}'  # most likely an upload sent to the wrong place
    return detail


class MethodGuard:
    """Falcon middleware: 405 (or 404) for a method the routed resource lacks.

    A resource may set ``route_exists_for`` (a set of methods): any other
    method answers 404, as for a path with no route at all (``PUT /NAME``
    exists only for PUT; ``GET /NAME`` stays a 404).
    """

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        if resource is None or req.method not in falcon.COMBINED_METHODS:
            return  # no route: 404; a method Falcon does not know: its 400
        only = getattr(resource, 'route_exists_for', None)
        if only is not None and req.method not in only:
            raise NotFound(f'no resource at {req.path}')
        if hasattr(resource, f'on_{req.method.lower()}') and req.method != 'OPTIONS':
            return
        allowed = allowed_methods(resource)
        raise falcon.HTTPMethodNotAllowed(
            allowed, description=method_hint(req.method, req.path, allowed)
        )
