"""``GET /files`` (paged listing) and ``POST /files/missing`` (batch lookup)."""

from __future__ import annotations

import io
import json

import pytest
import webtest

from tests.conftest import sha256
from wsgi_store.app import create_app
from wsgi_store.config import Config
from wsgi_store.http.listing import MAX_LIMIT, MAX_LOOKUP, find_missing, list_page


def upload_many(app: webtest.TestApp, count: int) -> list[str]:
    return sorted(
        app.post('/files', b'object %d' % i).text.strip() for i in range(count)
    )


def missing(app: webtest.TestApp, doc: object, **kw) -> webtest.TestResponse:
    body = json.dumps(doc).encode()
    return app.post('/files/missing', body, content_type='application/json', **kw)


# -- GET /files ------------------------------------------------------------------
def test_empty_store_lists_nothing(app):
    resp = app.get('/files')
    assert resp.content_type == 'application/json'
    assert resp.json == {'hashes': [], 'next': None}


def test_pages_cover_every_hash_once_in_order(app):
    stored = upload_many(app, 25)
    seen, after, pages = [], '', 0
    while True:
        doc = app.get('/files', {'after': after, 'limit': '7'}).json
        pages += 1
        assert len(doc['hashes']) <= 7
        seen += doc['hashes']
        if doc['next'] is None:
            break
        assert doc['next'] == doc['hashes'][-1]
        after = doc['next']
    assert seen == stored
    assert pages == 4  # 7 + 7 + 7 + 4


def test_exact_multiple_of_limit_ends_with_null_next(app):
    stored = upload_many(app, 4)
    first = app.get('/files?limit=2').json
    assert first['next'] == stored[1]
    second = app.get(f'/files?limit=2&after={first["next"]}').json
    assert second == {'hashes': stored[2:], 'next': None}


def test_after_accepts_a_prefix_and_any_case(app):
    stored = upload_many(app, 30)
    pivot = stored[10]
    assert app.get(f'/files?after={pivot.upper()}').json['hashes'] == stored[11:]
    prefix = pivot[:3]
    expected = [h for h in stored if h > prefix]
    assert app.get(f'/files?after={prefix}').json['hashes'] == expected
    assert app.get('/files?after=').json['hashes'] == stored


def test_default_limit_and_cap(app, monkeypatch):
    from wsgi_store.http import listing

    stored = upload_many(app, 5)
    monkeypatch.setattr(listing, 'DEFAULT_LIMIT', 2)
    monkeypatch.setattr(listing, 'MAX_LIMIT', 3)
    assert app.get('/files').json['hashes'] == stored[:2]
    assert app.get('/files?limit=999999').json['hashes'] == stored[:3]


@pytest.mark.parametrize(
    'query',
    [
        'limit=0',
        'limit=-1',
        'limit=abc',
        'limit=',
        'limit=1.5',
        'limit=%C2%B2',  # a superscript two: isdigit() but not int()-able
        'limit=' + '9' * 40,
        'limit=1&limit=2',
        'after=xyz',
        'after=' + 'a' * 65,
        'after=a&after=b',
        'after=..%2F..',
    ],
)
def test_bad_parameters_are_400(app, query):
    resp = app.get(f'/files?{query}', status=400)
    assert resp.content_type == 'application/problem+json'
    assert resp.json['status'] == 400


def test_list_page_works_on_any_backend(backend):
    hashes = []
    for i in range(5):
        hashes.append(backend.put(io.BytesIO(b'listing %d' % i)).hash)
    hashes.sort()
    assert list_page(backend, '', 3) == {'hashes': hashes[:3], 'next': hashes[2]}
    assert list_page(backend, hashes[2], 3) == {'hashes': hashes[3:], 'next': None}
    assert list_page(backend, hashes[-1], 3) == {'hashes': [], 'next': None}


def test_limit_constant_is_documented_value():
    assert MAX_LIMIT == 10_000 and MAX_LOOKUP == 10_000


# -- POST /files/missing ----------------------------------------------------------
def test_missing_lists_absent_hashes_in_request_order(app):
    present = upload_many(app, 3)
    absent = [sha256(b'absent %d' % i) for i in range(3)]
    ask = [absent[2], present[0], absent[0], present[2], absent[1]]
    resp = missing(app, ask)
    assert resp.content_type == 'application/json'
    assert resp.json == {'missing': [absent[2], absent[0], absent[1]]}


def test_missing_normalises_case_and_drops_duplicates(app):
    absent = sha256(b'nope')
    present = upload_many(app, 1)[0]
    resp = missing(app, [absent.upper(), absent, present.upper()])
    assert resp.json == {'missing': [absent]}


def test_missing_empty_list(app):
    assert missing(app, []).json == {'missing': []}


def test_missing_accepts_any_content_type_and_chunked(app):
    absent = sha256(b'nope')
    body = json.dumps([absent]).encode()
    resp = app.post('/files/missing', body, content_type='text/plain')
    assert resp.json == {'missing': [absent]}
    req = webtest.TestRequest.blank('/files/missing', method='POST')
    req.environ['wsgi.input'] = io.BytesIO(body)
    req.environ['wsgi.input_terminated'] = True
    req.environ.pop('CONTENT_LENGTH', None)
    req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
    assert json.loads(req.get_response(app.app).body) == {'missing': [absent]}


@pytest.mark.parametrize(
    'body',
    [
        b'',
        b'not json',
        b'{"hashes": []}',
        b'"abc"',
        b'[1]',
        b'[null]',
        b'[["a"]]',
        b'["xyz"]',
        b'["' + b'a' * 63 + b'"]',
        b'\xff\xfe[',
        b'[' * 100_000,  # deep nesting must not become a RecursionError (500)
    ],
)
def test_missing_bad_bodies_are_400(app, body):
    resp = app.post('/files/missing', body, content_type='application/json', status=400)
    assert resp.json['status'] == 400


def test_missing_names_the_bad_item(app):
    resp = missing(app, [sha256(b'a'), 'zz'], status=400)
    assert resp.json['detail'].startswith('item 1:')


def test_missing_too_many_hashes_is_413(app, monkeypatch):
    from wsgi_store.http import listing

    monkeypatch.setattr(listing, 'MAX_LOOKUP', 3)
    resp = missing(app, [sha256(b'%d' % i) for i in range(4)], status=413)
    assert resp.json['limit'] == 3
    assert missing(app, [sha256(b'%d' % i) for i in range(3)]).status_int == 200


def test_missing_10000_hashes(app):
    present = upload_many(app, 2)
    ask = [sha256(b'%d' % i) for i in range(MAX_LOOKUP - 2)] + present
    resp = missing(app, ask)
    assert len(resp.json['missing']) == MAX_LOOKUP - 2
    missing(app, [*ask, sha256(b'one more')], status=413)


def test_missing_oversized_body_is_413_before_parsing(app):
    body = b'[' + b' ' * (2 * 1024 * 1024) + b']'
    resp = app.post('/files/missing', body, status=413)
    assert resp.json['type'].endswith('/too-large')


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'PUT', 'DELETE'])
def test_other_methods_on_missing_are_405_not_invalid_hash(app, method):
    resp = app.request('/files/missing', method=method, status=405)
    assert resp.headers['Allow'] == 'POST'
    if method != 'HEAD':
        assert resp.json['type'].endswith('/method-not-allowed')


def test_files_allows_get_head_and_post_only(app):
    resp = app.request('/files', method='PUT', status=405)
    assert set(resp.headers['Allow'].split(', ')) == {'GET', 'HEAD', 'POST'}


@pytest.mark.parametrize('path', ['/files', '/readyz', '/metrics', '/openapi.json'])
def test_every_get_route_answers_head_with_the_same_headers(app, path):
    """RFC 9110 9.1: a server supports HEAD wherever it supports GET."""
    get = app.get(path)
    head = app.head(path)
    assert head.status_int == get.status_int == 200
    assert head.body == b''
    assert head.headers['Content-Type'] == get.headers['Content-Type']


def test_find_missing_works_on_any_backend(backend):
    here = backend.put(io.BytesIO(b'present')).hash
    gone = [sha256(b'gone %d' % i) for i in range(3)]
    assert find_missing(backend, [gone[0], here, gone[1], gone[2]]) == gone
    assert find_missing(backend, []) == []


def test_md5_store_checks_its_own_length(store_dir):
    config = Config(store_dir=store_dir, hash='md5')
    app = webtest.TestApp(create_app(config))
    missing(app, [sha256(b'a')], status=400)
    app.get('/files?after=' + 'a' * 33, status=400)
    h = app.post('/files', b'md5 object').text.strip()
    assert app.get('/files').json['hashes'] == [h]


@pytest.mark.parametrize('remote', [False, True])
def test_find_missing_runs_concurrently_only_for_remote_lookups(fs_backend, remote):
    """The backend says whether ``exists`` is a network round trip; its name
    does not matter."""
    import threading

    from wsgi_store.http.listing import find_missing

    seen: set[int] = set()
    real = fs_backend.exists

    def exists(hex_hash: str) -> bool:
        seen.add(threading.get_ident())
        return real(hex_hash)

    fs_backend.exists = exists
    fs_backend.remote_lookups = remote
    fs_backend.name = 'other'
    hashes = ['a' * 64, 'b' * 64, 'c' * 64]
    assert find_missing(fs_backend, hashes) == hashes
    assert (seen != {threading.get_ident()}) is remote
