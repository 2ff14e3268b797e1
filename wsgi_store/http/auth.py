"""Bearer tokens on requests: the scope rule (keyed by the route) and the middleware.

The tokens file, its parser and hot reload live in :mod:`wsgi_store.http.tokens`.

NOTE: the scope a request needs is decided from the route that will serve it
(Falcon's ``req.uri_template``, set by the router before ``process_resource``),
never from ``req.path``: ``//files``, ``/%2Ffiles`` and ``/./files`` may all
reach the listing, and a path-string rule once let them skip its scope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import falcon

from wsgi_store.config import Config
from wsgi_store.http import landing
from wsgi_store.http.tokens import (
    B64TOKEN,
    SCOPES,
    Grant,
    TokensFileError,
    TokenStore,
    check_tokens_file,
    find_grant,
    load_tokens,
    parse_tokens,
)

logger = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0  # how often a worker looks at the file's identity
REALM = 'wsgi-store'


@dataclass(frozen=True)
class Need:
    """What one method of one route needs.

    Attributes:
        scope: the scope a token must grant; None: open to everyone.
        public: opened to everyone by ``public_read``.
    """

    scope: str | None
    public: bool = False


OPEN = Need(None)
READ = Need('read', public=True)  # an object (a hash works like an unguessable link)
READ_ALWAYS = Need('read')  # the listing hands out every link: never public
WRITE = Need('write')
DELETE = Need('delete')
METRICS = Need('metrics')

# The one rule: URI template -> method -> need. A route missing here falls back
# to _BY_METHOD (never open); test_auth checks every routed template is listed.
ROUTE_NEEDS: dict[str, dict[str, Need]] = {
    '/': {'GET': READ, 'HEAD': READ, 'POST': WRITE, 'DELETE': DELETE},
    '/files': {'GET': READ_ALWAYS, 'HEAD': READ_ALWAYS, 'POST': WRITE},
    '/files/missing': {'POST': READ},  # a lookup: it only reads
    '/files/{file_hash}': {
        'GET': READ,
        'HEAD': READ,
        'PUT': WRITE,
        'DELETE': DELETE,
    },
    '/healthz': {'GET': OPEN, 'HEAD': OPEN},
    '/readyz': {'GET': OPEN, 'HEAD': OPEN},
    '/metrics': {'GET': METRICS, 'HEAD': METRICS},
    '/openapi.json': {'GET': READ, 'HEAD': READ},
    '/static/{name}': {'GET': OPEN, 'HEAD': OPEN},  # the upload page's script/style
    '/{name}': {'PUT': WRITE},  # curl -T FILE http://host/ (named.py)
    # Resumable uploads (tus): all write, HEAD of an upload too (its offset and
    # metadata are the uploader's); OPTIONS is answered before auth (discovery).
    '/uploads': {'POST': WRITE, 'OPTIONS': OPEN},
    '/uploads/{upload_id}': {
        'HEAD': WRITE,
        'PATCH': WRITE,
        'DELETE': WRITE,
        'OPTIONS': OPEN,
    },
}
_BY_METHOD = {'GET': READ, 'HEAD': READ, 'DELETE': DELETE}


def route_need(template: str | None, method: str, resource: object) -> Need:
    """What ``method`` on the route ``template`` (served by ``resource``) needs.

    No route (``resource`` None): open, so the router answers 404 to everyone.
    A method the resource has no responder for and the table does not list:
    open, so the router answers 405. Otherwise the table's entry, or for an
    unlisted one a scope by method (``write`` for anything but reads and
    deletes): never open.
    """
    if resource is None or template is None:
        return OPEN
    need = ROUTE_NEEDS.get(template, {}).get(method)
    if need is not None:
        return need
    if not hasattr(resource, f'on_{method.lower()}'):
        return OPEN
    return _BY_METHOD.get(method, WRITE)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is none.

    Raises:
        falcon.HTTPUnauthorized: a Bearer header whose token is malformed.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(' ')
    if scheme.lower() != 'bearer':
        return None  # another scheme: RFC 6750 treats it as no credentials
    token = value.strip()
    if not token:
        return None
    if not B64TOKEN.fullmatch(token):
        raise _unauthorized('the bearer token is malformed', 'invalid_token')
    return token


class TokenAuth:
    """Falcon middleware: require a bearer token with the route's scope.

    The scope comes from :data:`ROUTE_NEEDS` by the matched route's URI
    template: ``/healthz`` and ``/readyz`` open; ``/metrics`` ``metrics``;
    listing ``GET /files`` ``read`` even with ``public_read``; the lookup
    ``POST /files/missing`` ``read``; object reads ``read`` (open with
    ``public_read``); uploads ``write``; deletes ``delete``.

    No token: 401 with ``WWW-Authenticate: Bearer realm="wsgi-store"``. An
    unknown or malformed token: 401 with ``error="invalid_token"`` (RFC 6750
    section 3.1). A known token without the scope: 403 with
    ``error="insufficient_scope"``.
    """

    def __init__(self, config: Config, *, check_interval: float | None = None) -> None:
        if config.tokens_file is None:
            raise TokensFileError('TokenAuth needs config.tokens_file')
        self.public_read = config.public_read
        interval = RELOAD_CHECK_SECONDS if check_interval is None else check_interval
        self.tokens = TokenStore(config.tokens_file, check_interval=interval)

    def process_resource(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        params: dict,
    ) -> None:
        scope = self.required_scope(req, resource)
        if scope is None:
            return
        token = bearer_token(req.get_header('Authorization'))
        if token is None:
            raise _unauthorized('this request needs a bearer token')
        grant = find_grant(self.tokens.current(), token)
        if grant is None:
            raise _unauthorized('the bearer token is not valid', 'invalid_token')
        if scope not in grant.scopes:
            raise falcon.HTTPForbidden(
                description=f'the token lacks the "{scope}" scope',
                headers={
                    'WWW-Authenticate': _challenge('insufficient_scope', scope=scope)
                },
            )

    def required_scope(self, req: falcon.Request, resource: object) -> str | None:
        """The scope a request needs, or None when it is open."""
        if req.uri_template == '/' and landing.is_page_request(req):
            return None  # the upload page, or the seed's 400: reads nothing
        need = route_need(req.uri_template, req.method, resource)
        if need.public and self.public_read:
            return None
        return need.scope


def _challenge(error: str | None = None, **params: str) -> str:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    parts.extend(f'{k}="{v}"' for k, v in params.items())
    return 'Bearer ' + ', '.join(parts)


def _unauthorized(
    description: str, error: str | None = None
) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(
        description=description, challenges=[_challenge(error)]
    )


# Re-exported for callers that import them from here (cli, preflight).
__all__ = [
    'ROUTE_NEEDS',
    'SCOPES',
    'Grant',
    'Need',
    'TokenAuth',
    'TokenStore',
    'TokensFileError',
    'bearer_token',
    'check_tokens_file',
    'find_grant',
    'load_tokens',
    'parse_tokens',
    'route_need',
]
