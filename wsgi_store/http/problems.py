"""The one place that maps errors to HTTP answers (RFC 9457 problem documents).

Backends raise :class:`~wsgi_store.errors.StoreError` subclasses and know nothing
of HTTP; the handlers registered by :func:`register` turn them (and Falcon's own
errors, and anything unexpected) into ``application/problem+json`` bodies, or
plain text when the client prefers ``text/plain``.
"""

from __future__ import annotations

import http
import json
import logging
from typing import Any

import falcon

from wsgi_store.errors import RangeNotSatisfiable, StoreError, Unauthorized

logger = logging.getLogger(__name__)

PROBLEM_JSON = 'application/problem+json'
TYPE_BASE = 'https://wsgi-store.invalid/problems/'


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict:
    """Build an RFC 9457 problem document."""
    body = {'type': TYPE_BASE + slug, 'title': title, 'status': status}
    body['detail'] = detail
    body.update(extra)
    return body


def render(req: falcon.Request, resp: falcon.Response, doc: dict) -> None:
    """Write a problem document as problem+json, or text/plain when preferred."""
    resp.status = falcon.code_to_http_status(doc['status'])
    preferred = req.client_prefers(('application/json', PROBLEM_JSON, 'text/plain'))
    if preferred == 'text/plain' and 'json' not in (req.accept or ''):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f'{doc["status"]} {doc["title"]}: {doc["detail"]}\n'
    else:
        resp.content_type = PROBLEM_JSON
        resp.text = json.dumps(doc, separators=(',', ':')) + '\n'


def _store_error(req: falcon.Request, resp: falcon.Response, ex: StoreError, _: dict):
    if ex.status >= 500:
        logger.error('%s %s: %s', req.method, req.path, ex.detail)
    render(req, resp, problem(ex.status, ex.slug, ex.title, ex.detail, **ex.extra))
    if isinstance(ex, RangeNotSatisfiable) and 'size' in ex.extra:
        resp.set_header('Content-Range', f'bytes */{ex.extra["size"]}')
    if isinstance(ex, Unauthorized):
        resp.set_header('WWW-Authenticate', 'Bearer realm="wsgi-store"')


def _http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, _: dict
):
    title = http.HTTPStatus(ex.status_code).phrase
    slug = title.lower().replace(' ', '-')
    detail = ex.description or title
    if ex.status_code == 405 and not ex.description:
        detail = f'{req.method} is not allowed here'
    render(req, resp, problem(ex.status_code, slug, title, detail))
    for name, value in (ex.headers or {}).items():
        if name.lower() == 'allow':  # one order everywhere; OPTIONS is refused
            from wsgi_store.http.methods import order_allow

            value = order_allow(value.split(','))
        resp.set_header(name, value)


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, _: dict):
    logger.exception('unexpected error on %s %s', req.method, req.path)
    render(
        req,
        resp,
        problem(
            500,
            'internal-error',
            'Internal Server Error',
            'The server failed to handle the request; it is logged.',
        ),
    )


def register(app: falcon.App) -> None:
    """Install the error handlers (most specific last wins in Falcon)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(StoreError, _store_error)
