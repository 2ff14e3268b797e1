"""CORS for web apps on other origins that upload to the store (tus) or read it.

Off unless ``cors_origins`` (``--cors-origin``, ``WSGI_STORE_CORS_ORIGINS``)
names origins. Then, on the upload and object routes only, and for those exact
origins only:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  is answered here, before the tus discovery, the method guard and
  authentication (a preflight never carries credentials): ``204`` with the
  route's methods and the request headers tus and the API use;
- every other answer, errors included, gets ``Access-Control-Allow-Origin`` and
  ``Access-Control-Expose-Headers`` (``Location``, ``Upload-Offset``, the hash
  header...), so a script can read them.

Any other origin, or any other route, gets the answers it got without CORS
(the method guard's ``405`` for ``OPTIONS`` outside ``/uploads``). The route is
the matched URI template, never ``req.path`` (see :mod:`wsgi_store.http.auth`).
No credentials mode: tokens travel in ``Authorization``, never in cookies.
"""

from __future__ import annotations

import falcon

from wsgi_store.config import Config
from wsgi_store.http.methods import allowed_methods
from wsgi_store.tus import headers as tus_headers

ROUTES = frozenset(
    {'/', '/files', '/files/{file_hash}', '/uploads', '/uploads/{upload_id}'}
)
ALLOW_HEADERS = (
    'Authorization',
    'Content-Type',
    'Tus-Resumable',
    'Upload-Length',
    'Upload-Offset',
    'Upload-Metadata',
    'Upload-Defer-Length',
    'Upload-Concat',
    'Upload-Checksum',
    'Upload-Complete',  # the IETF draft (interop 5-6; Upload-Incomplete in 3)
    'Upload-Incomplete',
    'Upload-Draft-Interop-Version',
    'Repr-Digest',
    'Content-Digest',
    'If-Match',
    'If-None-Match',
    'Range',
    'X-HTTP-Method-Override',
    'X-Requested-With',
)
EXPOSE_HEADERS = tuple(
    dict.fromkeys(
        (
            *tus_headers.EXPOSED,
            'Upload-Complete',
            'Upload-Incomplete',
            'Upload-Draft-Interop-Version',
            'Upload-Limit',
            'ETag',
            'Content-Disposition',
            'Repr-Digest',
        )
    )
)
MAX_AGE = 600  # seconds a browser may reuse a preflight


class Cors:
    """Falcon middleware: preflights and response headers for allowed origins."""

    def __init__(self, config: Config) -> None:
        self.origins = frozenset(config.cors_origins)

    def allowed(self, req: falcon.Request) -> str | None:
        """The request's ``Origin`` when it is one of ours on a CORS route."""
        origin = req.get_header('Origin')
        if origin is None or req.uri_template not in ROUTES:
            return None
        return origin if origin in self.origins else None

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        if resource is None or req.method != 'OPTIONS':
            return
        if not req.get_header('Access-Control-Request-Method'):
            return  # a plain OPTIONS: tus discovery or the method guard answers
        origin = self.allowed(req)
        if origin is None:
            return  # not ours: no CORS headers, so the browser refuses
        methods = [*allowed_methods(resource), 'OPTIONS']
        resp.status = falcon.HTTP_204
        resp.set_header('Access-Control-Allow-Methods', ', '.join(methods))
        resp.set_header('Access-Control-Allow-Headers', ', '.join(ALLOW_HEADERS))
        resp.set_header('Access-Control-Max-Age', str(MAX_AGE))
        resp.context.cors_preflight = True
        resp.complete = True

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        if req.uri_template not in ROUTES:
            return
        resp.append_header('Vary', 'Origin')
        origin = self.allowed(req)
        if origin is None:
            return
        resp.set_header('Access-Control-Allow-Origin', origin)
        if not getattr(resp.context, 'cors_preflight', False):
            resp.set_header('Access-Control-Expose-Headers', ', '.join(EXPOSE_HEADERS))
