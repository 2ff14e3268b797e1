"""The one factory: :func:`create_app` builds the Falcon WSGI application."""

from __future__ import annotations

from typing import Any

import falcon

from wsgi_store.backends import Backend, make_backend
from wsgi_store.config import Config
from wsgi_store.http import problems
from wsgi_store.http.accesslog import AccessLog, scoped_to_response
from wsgi_store.http.assets import StaticResource
from wsgi_store.http.listing import FilesResource, MissingResource
from wsgi_store.http.methods import MethodGuard
from wsgi_store.http.metrics import Metrics, MetricsMiddleware, MetricsResource
from wsgi_store.http.named import NamedResource
from wsgi_store.http.openapi import OpenAPIResource
from wsgi_store.http.resources import (
    HealthResource,
    ObjectResource,
    ObjectService,
    QueryResource,
    ReadyResource,
)
from wsgi_store.tus import TusMiddleware
from wsgi_store.tus import add_routes as add_tus_routes


def create_app(
    config: Config | None = None, *, backend: Backend | None = None
) -> falcon.App:
    """Build the application.

    Args:
        config: settings; ``Config.from_env()`` when omitted.
        backend: storage; built from ``config`` when omitted (tests inject one).
    """
    config = config or Config.from_env()
    backend = backend or make_backend(config)
    service = ObjectService(backend, config)
    # Outermost first: access log (request id), metrics, then the rest.
    middleware: list[object] = [AccessLog(config.log_format)]
    metrics = Metrics.from_config(config) if config.metrics else None
    if metrics is not None:
        middleware.append(MetricsMiddleware(metrics))
    if config.cors_origins:
        from wsgi_store.http.cors import Cors

        middleware.append(Cors(config))
    middleware.append(TusMiddleware(config))  # tus OPTIONS, version, headers
    middleware.append(MethodGuard())  # 405 (OPTIONS too) before auth
    if config.tokens_file is not None:
        from wsgi_store.http.auth import TokenAuth

        middleware.append(TokenAuth(config))
    app = _App(middleware=middleware)
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True
    app.resp_options.secure_cookies_by_default = True
    app.add_route('/', QueryResource(service))
    app.add_route('/files', FilesResource(service))
    app.add_route('/files/missing', MissingResource(service))
    app.add_route('/files/{file_hash}', ObjectResource(service))
    app.add_route('/healthz', HealthResource())
    app.add_route('/readyz', ReadyResource(backend))
    if metrics is not None:
        app.add_route('/metrics', MetricsResource(metrics))
    app.add_route('/openapi.json', OpenAPIResource(service.hex_length))
    app.add_route('/static/{name}', StaticResource())  # the upload page's assets
    add_tus_routes(app, backend, config)  # resumable uploads (issue 16)
    app.add_route('/{name}', NamedResource(service))  # curl -T FILE http://host/
    problems.register(app)
    return app


class _App(falcon.App):
    """A Falcon app whose request id lasts until the response body is closed."""

    def __call__(self, env: dict, start_response: Any) -> Any:  # type: ignore[override]
        return scoped_to_response(super().__call__(env, start_response), env)
