"""The one factory: :func:`create_app` builds the Falcon WSGI application."""

from __future__ import annotations

import falcon

from . import errors
from .backends import Backend, make_backend
from .config import Config
from .resources import (
    CollectionResource,
    HealthResource,
    ObjectResource,
    ReadyResource,
    SeedResource,
    Store,
)

OBJECT_METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'DELETE')


class RefuseOptions:
    """OPTIONS is not part of the API: answer 405 with ``Allow`` like any other."""

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        if req.method == 'OPTIONS' and resource is not None:
            allowed = [
                m for m in OBJECT_METHODS if hasattr(resource, f'on_{m.lower()}')
            ]
            raise falcon.HTTPMethodNotAllowed(allowed)


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
    store = Store(backend, config)
    app = falcon.App(middleware=[RefuseOptions()])
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True
    app.resp_options.secure_cookies_by_default = True
    app.add_route('/', SeedResource(store))
    app.add_route('/files', CollectionResource(store))
    app.add_route('/files/{file_hash}', ObjectResource(store))
    app.add_route('/healthz', HealthResource())
    app.add_route('/readyz', ReadyResource(backend))
    errors.register(app)
    return app
