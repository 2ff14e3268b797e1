"""``GET /openapi.json``: the OpenAPI 3.1 description shipped in the package.

The document is ``wsgi_store/http/openapi.json`` (package data), read with
:mod:`importlib.resources`. It describes hashes of any supported length (32 to
128 hex digits); the app serves it narrowed to its store's algorithm, so a
client (or a fuzzer) knows the exact length. ``tests/test_openapi.py`` checks
it against the routes the app really serves.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

import falcon

from wsgi_store import __version__

RESOURCE = 'openapi.json'
# Schemas in the document that are one hash (their length follows the algorithm).
HASH_PARAMETERS = ('file_hash_path', 'file_hash_query', 'file_hash_expected')


@functools.cache
def _packaged() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(RESOURCE).read_text('utf-8')
    return json.loads(text)


def document(hex_length: int | None = None) -> dict[str, Any]:
    """A fresh copy of the document, for hashes of ``hex_length`` digits if given.

    ``info.version`` is the package version.
    """
    doc = copy.deepcopy(_packaged())
    doc['info']['version'] = __version__
    if hex_length is not None:
        components = doc['components']
        for name in HASH_PARAMETERS:
            _exact_length(components['parameters'][name]['schema'], hex_length)
        _exact_length(components['schemas']['Hash'], hex_length)
        _exact_length(components['schemas']['HashList']['items'], hex_length)
        components['parameters']['after']['schema']['maxLength'] = hex_length
    return doc


def _exact_length(schema: dict[str, Any], length: int) -> None:
    schema['minLength'] = schema['maxLength'] = length


class OpenAPIResource:
    """Serves the document for a store whose hashes have ``hex_length`` digits."""

    def __init__(self, hex_length: int | None = None) -> None:
        self.body = json.dumps(document(hex_length), indent=1).encode() + b'\n'

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body
        resp.cache_control = ['public', 'max-age=300']

    on_head = on_get
