"""The one place for tus protocol headers: discovery, the version check, the
``Tus-Resumable`` on answers.

:class:`TusMiddleware` sits before the method guard and authentication, keyed by
the resource that will serve the request (never by path):

- ``OPTIONS`` on a tus route is answered here (204, ``Tus-Version``,
  ``Tus-Extension``, ``Tus-Max-Size``, ``Tus-Checksum-Algorithm``), without a
  token: it only describes the server.
- any other method needs ``Tus-Resumable: 1.0.0`` (else 412, ``Tus-Version``),
  checked by the resources' ``before`` hook once authentication passed.
- every answer from a tus route but ``OPTIONS`` carries ``Tus-Resumable``,
  errors included.
"""

from __future__ import annotations

import falcon

from wsgi_store.config import Config
from wsgi_store.errors import BadRequest
from wsgi_store.tus import headers as h
from wsgi_store.tus.draft import interop_version, respond
from wsgi_store.tus.resource import UploadResource, UploadsResource

TUS_RESOURCES = (UploadsResource, UploadResource)


class TusMiddleware:
    """Falcon middleware for the tus routes (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.max_size = config.max_upload_bytes
        # Partial uploads are concatenated from files: not on S3 (yet).
        self.extensions = [
            e for e in h.EXTENSIONS if config.backend != 's3' or e != 'concatenation'
        ]

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        if not isinstance(resource, TUS_RESOURCES):
            return
        if req.method == 'OPTIONS':
            self.discovery(resp)
            resp.complete = True
        # Other methods: authentication first, then the resources' version
        # check (h.require_version), so a client without a token gets 401.

    def discovery(self, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_204
        resp.set_header('Tus-Version', h.TUS_VERSION)
        resp.set_header('Tus-Extension', ','.join(self.extensions))
        resp.set_header('Tus-Checksum-Algorithm', ','.join(h.CHECKSUM_ALGORITHMS))
        if self.max_size:
            resp.set_header('Tus-Max-Size', str(self.max_size))

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        if not isinstance(resource, TUS_RESOURCES) or req.method == 'OPTIONS':
            return
        try:
            version = interop_version(req)
        except BadRequest:
            version = None
        if version is not None:
            respond(req, resp, version)
            return
        resp.set_header('Tus-Resumable', h.TUS_VERSION)
        status = str(resp.status)
        if status.startswith('412'):
            resp.set_header('Tus-Version', h.TUS_VERSION)
        elif status.startswith('460'):
            resp.status = '460 Checksum Mismatch'
