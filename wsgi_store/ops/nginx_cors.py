"""CORS on the answers nginx serves itself (direct reads, X-Accel-Redirect).

The app adds ``Vary: Origin`` on its CORS routes and, for an allowed
``Origin``, ``Access-Control-Allow-Origin`` and ``-Expose-Headers``
(:mod:`wsgi_store.http.cors`). nginx's own answers get the same from the same origin
list: a ``map`` of ``$http_origin`` (exact, case-sensitive, like the app) and
``add_header`` in each location that answers by itself (``always`` on its error
pages, which the app answers with CORS headers too). Nothing when no origin is
configured.
"""

from __future__ import annotations

import re

from wsgi_store.config import Config
from wsgi_store.http.cors import EXPOSE_HEADERS

_MAPS = """
# The request's Origin when it is one of the store's CORS origins, else ''
# (exactly as wsgi_store/http/cors.py decides it: the same list, case-sensitive).
map $http_origin ${name}_cors_origin {{
    default '';
{origins}
}}

map ${name}_cors_origin ${name}_cors_expose {{
    default '{expose}';
    '' '';
}}
"""


def cors_maps(config: Config, name: str) -> str:
    """The ``map`` blocks (for ``http {}``), or '' without CORS origins."""
    if not config.cors_origins:
        return ''
    origins = '\n'.join(
        f'    "~^{re.escape(origin)}$" $http_origin;'
        for origin in sorted(config.cors_origins)
    )
    expose = ', '.join(EXPOSE_HEADERS)
    return _MAPS.format(name=name, origins=origins, expose=expose)


def cors_headers(config: Config, name: str, *, always: bool = False) -> str:
    """``add_header`` lines for a location nginx answers from, or ''."""
    if not config.cors_origins:
        return ''
    flag = ' always' if always else ''
    return (
        f'        add_header Vary Origin{flag};\n'
        f'        add_header Access-Control-Allow-Origin ${name}_cors_origin{flag};\n'
        f'        add_header Access-Control-Expose-Headers ${name}_cors_expose{flag};\n'
    )
