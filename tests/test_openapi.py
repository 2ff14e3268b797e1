"""The OpenAPI document describes exactly what the app serves, and is valid 3.1."""

from __future__ import annotations

import json
from pathlib import Path

import falcon
import pytest
from falcon.routing import map_http_methods

from wsgi_store import __version__
from wsgi_store.app import create_app
from wsgi_store.config import Config
from wsgi_store.http.openapi import document

HTTP_METHODS = ('get', 'head', 'post', 'put', 'delete', 'patch', 'options', 'trace')
PACKAGED = (
    Path(__file__).resolve().parent.parent / 'wsgi_store' / 'http' / 'openapi.json'
)


def served_routes(app: falcon.App) -> dict[str, set[str]]:
    """Every URI template in the app's router and the methods its resource serves.

    OPTIONS is left out: Falcon adds a default responder, but the app refuses
    OPTIONS everywhere (RefuseOptions) and the document does not describe it.
    """
    routes: dict[str, set[str]] = {}

    def walk(nodes: list) -> None:
        for node in nodes:
            if node.resource is not None:
                methods = {m.lower() for m in map_http_methods(node.resource)}
                routes[node.uri_template] = methods - {'options'}
            walk(node.children or [])

    walk(app._router._roots)
    return routes


def described_routes(doc: dict) -> dict[str, set[str]]:
    return {
        path: {m for m in item if m in HTTP_METHODS}
        for path, item in doc['paths'].items()
    }


@pytest.fixture
def falcon_app(store_dir):
    return create_app(Config(store_dir=store_dir))


def test_every_served_route_is_described_and_nothing_else(falcon_app):
    served = served_routes(falcon_app)
    assert '/files/{file_hash}' in served and '/files/missing' in served
    assert described_routes(document()) == served


def test_router_walk_sees_every_route(falcon_app, app):
    """The walk above is only as good as its view of the router: probe it."""
    for template, methods in served_routes(falcon_app).items():
        path = template.replace('{file_hash}', 'a' * 64)
        path = path.replace('/static/{name}', '/static/upload.js')  # allow-listed
        for method in methods:
            resp = app.request(path, method=method.upper(), expect_errors=True)
            assert resp.status_int not in (404, 405) or (
                resp.status_int == 404 and '{file_hash}' in template
            ), (method, path, resp.status)


def test_without_metrics_only_metrics_is_missing(store_dir):
    served = served_routes(create_app(Config(store_dir=store_dir, metrics=False)))
    described = described_routes(document())
    assert set(described) - set(served) == {'/metrics'}


def test_document_is_valid_openapi_31():
    definitions = pytest.importorskip('schemathesis.specs.openapi.definitions')
    doc = document()
    errors = [str(e) for e in definitions.OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    assert doc['openapi'].startswith('3.1')
    assert doc['info']['version'] == __version__


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node['$ref']] if '$ref' in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves():
    doc = document()
    for ref in set(_refs(doc)):
        node = doc
        for part in ref.removeprefix('#/').split('/'):
            node = node[part]
        assert isinstance(node, dict), ref


def _operations(doc: dict):
    for path, item in doc['paths'].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def _resolve(doc: dict, node: dict) -> dict:
    while '$ref' in node:
        target = doc
        for part in node['$ref'].removeprefix('#/').split('/'):
            target = target[part]
        node = target
    return node


def test_operations_are_complete():
    doc = document()
    ids = [op['operationId'] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for path, method, op in _operations(doc):
        where = f'{method.upper()} {path}'
        assert op.get('summary'), where
        params = [_resolve(doc, p) for p in op.get('parameters', [])]
        assert 'X-Request-ID' in {p['name'] for p in params}, where
        for name in {s.strip('{}') for s in path.split('/') if s.startswith('{')}:
            assert any(p['in'] == 'path' and p['name'] == name for p in params)
        for status, response in op['responses'].items():
            headers = _resolve(doc, response).get('headers', {})
            assert 'X-Request-ID' in headers, (where, status)
            if method == 'head':
                assert 'content' not in _resolve(doc, response), (where, status)
        if path not in ('/healthz', '/readyz', '/static/{name}'):  # open routes
            assert {'401', '403'} <= set(op['responses']), where
            assert op['security'][0] == {}, where  # tokens are optional


def test_packaged_file_is_the_served_document(app):
    served = app.get('/openapi.json')
    assert served.content_type == 'application/json'
    packaged = json.loads(PACKAGED.read_text())
    body = served.json
    assert body['paths'].keys() == packaged['paths'].keys()
    hash_schema = body['components']['schemas']['Hash']
    assert hash_schema['minLength'] == hash_schema['maxLength'] == 64
    assert packaged['components']['schemas']['Hash']['maxLength'] == 128


def test_document_copies_are_independent():
    first = document(64)
    first['paths'].clear()
    assert document(64)['paths']
