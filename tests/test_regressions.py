"""One test per bug found by fuzzing (schemathesis, header fuzzing) or e2e runs."""

from __future__ import annotations

import pytest
import webtest

from tests.conftest import sha256
from wsgi_store.config import Config
from wsgi_store.http.metrics import Metrics

DATA = b'regression\n'
H = sha256(DATA)


# Found by fuzzing header values over the whole latin-1 range (HTTP header bytes
# reach the app latin-1 decoded): '\xb2' is '²', for which str.isdigit() is True
# but int() raises ValueError, so parse_range answered 500.
@pytest.mark.parametrize(
    'value', ['bytes=\u00b2-', 'bytes=-\u00b3', 'bytes=0-\u00b9', 'bytes=1\u00b2-5']
)
def test_range_with_superscript_digits_is_ignored_not_500(app, value):
    app.post('/files', DATA)
    resp = app.get(f'/files/{H}', headers={'Range': value})
    assert resp.status_int == 200  # a malformed Range is ignored (RFC 9110)
    assert resp.body == DATA


# Found by tests/test_metrics.py against gunicorn: a scrape while another worker
# boots read that worker's freshly created (still empty) file and failed with 500.
def test_scrape_while_a_worker_creates_its_file(tmp_path, monkeypatch):
    mp = tmp_path / 'mp'
    mp.mkdir()
    monkeypatch.setenv('PROMETHEUS_MULTIPROC_DIR', str(mp))
    metrics = Metrics(tmp_path, str(mp))
    metrics.requests.labels('/healthz', 'GET', '200').inc()
    (mp / 'counter_999999.db').write_bytes(b'')  # created, not yet sized
    body, _ = metrics.render(None)
    assert b'wsgi_store_http_requests_total{' in body


# GET /files/missing used to mean "the object named 'missing'" (a 400 invalid
# hash); the literal route now owns that path and answers 405 with Allow: POST.
def test_get_files_missing_is_405(app):
    resp = app.get('/files/missing', status=405)
    assert resp.headers['Allow'] == 'POST'


# POST /files/missing with deeply nested JSON: json.loads raises RecursionError,
# which is not a ValueError and would have been a 500.
def test_missing_deep_json_is_400(app):
    app.post('/files/missing', b'[' * 50_000, status=400)


def test_openapi_hash_lengths_follow_the_algorithm(store_dir):
    from wsgi_store.app import create_app

    app = webtest.TestApp(create_app(Config(store_dir=store_dir, hash='md5')))
    doc = app.get('/openapi.json').json
    schema = doc['components']['parameters']['file_hash_path']['schema']
    assert schema['minLength'] == schema['maxLength'] == 32
