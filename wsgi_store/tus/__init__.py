"""Resumable uploads with the tus 1.0.0 protocol (``/uploads``).

:func:`add_routes` wires the resources into an app; the app's factory adds
:class:`~wsgi_store.tus.protocol.TusMiddleware` to its middleware.
"""

from __future__ import annotations

import falcon

from wsgi_store.backends.base import Backend
from wsgi_store.config import Config
from wsgi_store.tus.protocol import TusMiddleware
from wsgi_store.tus.resource import Tus, UploadResource, UploadsResource

__all__ = ['Tus', 'TusMiddleware', 'UploadResource', 'UploadsResource', 'add_routes']


def add_routes(app: falcon.App, backend: Backend, config: Config) -> Tus:
    """Route ``/uploads`` and ``/uploads/{upload_id}``; return the shared state."""
    tus = Tus(backend, config)
    app.add_route('/uploads', UploadsResource(tus))
    app.add_route('/uploads/{upload_id}', UploadResource(tus))
    return tus
