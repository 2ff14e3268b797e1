"""Thin Falcon resources: validate the request, call the backend, set the response.

The query-string routes (``/`` with ``?file_hash=``) and the REST routes
(``/files/{hash}``) share one :class:`ObjectService`: the HTTP front of the
backend (it holds the backend and the config; it stores nothing itself).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import falcon

from wsgi_store.backends.base import Backend, PutResult
from wsgi_store.config import Config
from wsgi_store.hashing import hex_length, is_object_name, normalize_hash
from wsgi_store.http import conditional, downloads, landing, uploads
from wsgi_store.http.named import check_name


class ObjectService:
    """The operations behind every object route (upload, download, delete)."""

    def __init__(self, backend: Backend, config: Config) -> None:
        self.backend = backend
        self.config = config
        self.hex_length = hex_length(backend.algorithm)

    def hash_from(self, value: object) -> str:
        return normalize_hash(value, self.hex_length)

    def upload(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        path_hash: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Store the body; ``name`` (``PUT /NAME``) goes into the Location."""
        result = uploads.receive(req, self.backend, self.config, path_hash)
        self._upload_answer(req, resp, result, name)

    def download(
        self, req: falcon.Request, resp: falcon.Response, hex_hash: str
    ) -> None:
        if self.config.s3_redirect and req.method == 'GET':
            presign = getattr(self.backend, 'presign_get', None)
            if presign is not None:
                self.backend.stat(hex_hash)  # 404 before redirecting
                resp.status = falcon.HTTP_307
                resp.location = presign(hex_hash)
                return
        downloads.send(req, resp, self.backend, hex_hash, self.config)

    def delete(self, req: falcon.Request, resp: falcon.Response, hex_hash: str) -> None:
        conditional.check_write('DELETE', req.get_header, self.backend, hex_hash)
        self.backend.delete(hex_hash)
        _answer(req, resp, hex_hash, {'hash': hex_hash, 'deleted': True})

    def _upload_answer(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        result: PutResult,
        name: str | None = None,
    ) -> None:
        resp.context.put_result = result  # for the metrics middleware
        resp.location = f'/files/{result.hash}'
        if name is not None:
            resp.location += '?filename=' + quote(name, safe='')
        doc = {
            'hash': result.hash,
            'algorithm': self.backend.algorithm,
            'size': result.size,
            'created': result.created,
        }
        _answer(req, resp, result.hash, doc)


def _answer(req: falcon.Request, resp: falcon.Response, text: str, doc: dict) -> None:
    """200 with ``text`` + newline, or ``doc`` as JSON when the client asks for it."""
    if req.client_prefers(
        ('text/plain', 'application/json')
    ) == 'application/json' and 'json' in (req.accept or ''):
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(doc, separators=(',', ':')) + '\n'
    else:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = text + '\n'


class QueryResource:
    """``/``: the hash in the ``file_hash`` query parameter (the original contract)."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if 'file_hash' not in req.params and landing.wants_html(req):
            landing.render(req, resp, self.service.backend.algorithm)  # a browser
            return
        self.service.download(
            req, resp, self.service.hash_from(req.params.get('file_hash'))
        )

    on_head = on_get

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.service.upload(req, resp)

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        hex_hash = self.service.hash_from(req.params.get('file_hash'))
        self.service.delete(req, resp, hex_hash)


class ObjectResource:
    """``/files/{file_hash}``: one object."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, file_hash: str
    ) -> None:
        self.service.download(req, resp, self.service.hash_from(file_hash))

    on_head = on_get

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, file_hash: str
    ) -> None:
        if not is_object_name(file_hash.lower(), self.service.hex_length):
            # Not a hash: ``curl -T photo.jpg http://host/files/`` (PUT /NAME).
            name = check_name(file_hash, top_level=False)
            self.service.upload(req, resp, name=name)
            return
        path_hash = self.service.hash_from(file_hash)
        conditional.check_write('PUT', req.get_header, self.service.backend, path_hash)
        self.service.upload(req, resp, path_hash=path_hash)

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, file_hash: str
    ) -> None:
        self.service.delete(req, resp, self.service.hash_from(file_hash))


class HealthResource:
    """``/healthz``: the process answers; no backend access."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = '{"status":"ok"}\n'

    on_head = on_get


class ReadyResource:
    """``/readyz``: 200 only when every backend check passes, else 503 naming it."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = self.backend.ready_checks()
        failed = [c.name for c in checks if not c.ok]
        resp.status = falcon.HTTP_503 if failed else falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.text = (
            json.dumps(
                {
                    'status': 'fail' if failed else 'ok',
                    'failed': failed,
                    'checks': {
                        c.name: {'ok': c.ok, 'detail': c.detail} for c in checks
                    },
                }
            )
            + '\n'
        )

    on_head = on_get
