"""The yardstick for 1 KiB GETs: a trivial Falcon app returning 1 KiB from memory.

Run under the same gunicorn settings as the store (``gunicorn -c gunicorn.conf.py
bench.trivial_app:app``), so the ratio shows what the store adds to the framework.
"""

from __future__ import annotations

import falcon

BODY = b'x' * 1024


class Blob:
    """``GET /files/{name}``: the same 1 KiB whatever the name."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.content_type = 'application/octet-stream'
        resp.data = BODY


class Health:
    """``GET /healthz``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = 'ok\n'


def create_app() -> falcon.App:
    """Build the trivial app."""
    app = falcon.App()
    app.add_route('/files/{name}', Blob())
    app.add_route('/healthz', Health())
    return app


app = create_app()
