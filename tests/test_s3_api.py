"""The HTTP API over the S3 backend: WebTest in process, then a real gunicorn."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import webtest

from tests import s3env
from tests.servers import rss_kib, start_gunicorn
from tests.streams import BreakingStream
from wsgi_store.app import create_app
from wsgi_store.backends.s3 import S3Backend
from wsgi_store.config import Config

pytestmark = pytest.mark.s3

MiB = 1 << 20
PART = 5 * MiB


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from s3env.prefix_fixture(request)


@pytest.fixture
def config(prefix: str) -> Config:
    return s3env.s3_config(prefix, s3_part_bytes=PART, chunk_bytes=256 * 1024)


@pytest.fixture
def backend(config: Config) -> Iterator[S3Backend]:
    store = S3Backend.from_config(config)
    yield store
    store.close()


def make_app(config: Config, backend: S3Backend) -> webtest.TestApp:
    app = create_app(config, backend=backend)
    return webtest.TestApp(app, extra_environ={'wsgi.input_terminated': True})


@pytest.fixture
def app(config: Config, backend: S3Backend) -> webtest.TestApp:
    return make_app(config, backend)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(backend: S3Backend) -> tuple[list[str], list[dict]]:
    """Keys other than the metadata, and pending multipart uploads."""
    keys = [k for k in s3env.list_keys(backend.prefix) if k != backend.meta_key]
    return keys, s3env.list_uploads(backend.prefix)


@pytest.mark.parametrize('size', [0, 100, 200 * 1024, 2 * PART + 1])
def test_round_trip(app: webtest.TestApp, backend: S3Backend, size: int) -> None:
    data = os.urandom(size)
    digest = sha256(data)
    assert app.post('/', data).text == digest + '\n'
    assert app.get(f'/files/{digest}').body == data
    assert app.get('/', {'file_hash': digest}).body == data
    head = app.head(f'/files/{digest}')
    assert head.headers['Content-Length'] == str(size)
    assert head.headers['ETag'] == f'"{digest}"'
    again = app.post('/files', data, headers={'Accept': 'application/json'})
    assert again.json['created'] is False
    assert leftovers(backend) == ([backend.key_for(digest)], [])


def test_multipart_form_upload(app: webtest.TestApp) -> None:
    data = os.urandom(PART + 10)
    resp = app.post('/', upload_files=[('file', 'a.bin', data)])
    assert resp.text == sha256(data) + '\n'
    assert app.get(f'/files/{sha256(data)}').body == data


@pytest.mark.parametrize('size', [100, 200 * 1024])
def test_range(app: webtest.TestApp, size: int) -> None:
    data = os.urandom(size)
    digest = app.post('/', data).text.strip()
    for header, start, end in [
        ('bytes=0-4', 0, 5),
        ('bytes=7-', 7, size),
        ('bytes=-3', size - 3, size),
        (f'bytes=50-{size * 2}', 50, size),
    ]:
        resp = app.get(f'/files/{digest}', headers={'Range': header}, status=206)
        assert resp.body == data[start:end]
        assert resp.headers['Content-Range'] == f'bytes {start}-{end - 1}/{size}'
    resp = app.get(f'/files/{digest}', headers={'Range': f'bytes={size}-'}, status=416)
    assert resp.headers['Content-Range'] == f'bytes */{size}'


def test_unknown_hash_is_404(app: webtest.TestApp) -> None:
    absent = sha256(b'absent')
    for method in (app.get, app.head, app.delete):
        assert method(f'/files/{absent}', status=404).status_int == 404
    assert app.get('/', {'file_hash': absent}, status=404).json['status'] == 404


def test_delete(app: webtest.TestApp, backend: S3Backend) -> None:
    digest = app.post('/', b'to delete').text.strip()
    app.delete(f'/files/{digest}', status=200)
    app.get(f'/files/{digest}', status=404)
    app.delete(f'/files/{digest}', status=404)
    assert leftovers(backend) == ([], [])


@pytest.mark.parametrize('size', [100, 2 * PART + 1])
def test_wrong_file_hash_stores_nothing(
    app: webtest.TestApp, backend: S3Backend, size: int
) -> None:
    data = os.urandom(size)
    wrong = sha256(b'something else')
    resp = app.post(f'/?file_hash={wrong}', data, status=400)
    assert resp.json['type'].endswith('/digest-mismatch')
    assert leftovers(backend) == ([], [])
    app.get(f'/files/{sha256(data)}', status=404)


@pytest.mark.parametrize('good', [MiB, 2 * PART + 1])
def test_broken_stream_stores_nothing(
    app: webtest.TestApp, backend: S3Backend, good: int
) -> None:
    req = webtest.TestRequest.blank('/', method='POST')
    req.environ['wsgi.input'] = BreakingStream(good)
    req.environ['wsgi.input_terminated'] = True
    req.environ['CONTENT_LENGTH'] = str(good * 2)
    resp = req.get_response(app.app)
    assert resp.status_int == 400
    assert leftovers(backend) == ([], [])


def test_short_body_stores_nothing(app: webtest.TestApp, backend: S3Backend) -> None:
    req = webtest.TestRequest.blank('/', method='POST')
    req.environ['wsgi.input'] = io.BytesIO(os.urandom(PART + 1))
    req.environ['wsgi.input_terminated'] = True
    req.environ['CONTENT_LENGTH'] = str(2 * PART)
    assert req.get_response(app.app).status_int == 400
    assert leftovers(backend) == ([], [])


def test_readyz(app: webtest.TestApp) -> None:
    assert app.get('/readyz').status_int == 200


def test_s3_down_is_503_with_a_clear_body(prefix: str) -> None:
    config = s3env.s3_config(
        prefix,
        s3_endpoint_url='http://127.0.0.1:9',  # discard port: nothing listens
        s3_max_attempts=1,
        s3_connect_timeout=1.0,
    )
    app = make_app(config, S3Backend.from_config(config))
    resp = app.get(f'/files/{sha256(b"x")}', status=503)
    assert 'S3 is unavailable' in resp.json['detail']
    assert app.post('/', b'data', status=503).json['status'] == 503
    assert app.get('/readyz', status=503).status_int == 503


def test_s3_redirect_answers_307_to_a_presigned_url(
    config: Config, backend: S3Backend
) -> None:
    app = make_app(config.replace(s3_redirect=True), backend)
    digest = app.post('/', b'fetched from S3').text.strip()
    resp = app.get(f'/files/{digest}', status=307)
    with urllib.request.urlopen(resp.headers['Location'], timeout=10) as reply:
        assert reply.read() == b'fetched from S3'
    app.get(f'/files/{sha256(b"absent")}', status=404)


# -- a real gunicorn -----------------------------------------------------------
class RandomBody:
    """``size`` bytes (a random MiB repeated) made while read, hashed as sent."""

    def __init__(self, size: int) -> None:
        self.size, self.sent = size, 0
        self.hasher = hashlib.sha256()
        self._block = os.urandom(MiB)

    def __len__(self) -> int:
        return self.size - self.sent

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.sent
        offset = self.sent % MiB
        data = self._block[offset : offset + (left if n < 0 else min(n, left))]
        self.sent += len(data)
        self.hasher.update(data)
        return data


class PeakRss:
    """Sample the peak RSS of some processes in a thread, until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, sum(rss_kib(pid) for pid in self.pids))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.e2e
def test_256_mib_through_gunicorn_in_constant_memory(
    tmp_path: Path, config: Config, backend: S3Backend
) -> None:
    size = 256 * MiB
    server = start_gunicorn(
        tmp_path,
        tmp_path / 'unused-store',
        workers=1,
        backend='s3',
        s3_endpoint_url=config.s3_endpoint_url,
        s3_bucket=config.s3_bucket,
        s3_prefix=config.s3_prefix,
        s3_region=config.s3_region,
    )
    try:
        [worker] = server.worker_pids()
        warm = requests.post(server.url + '/', data=b'warm up', timeout=30)
        requests.get(f'{server.url}/files/{warm.text.strip()}', timeout=30)
        before = rss_kib(worker)
        body = RandomBody(size)
        with PeakRss([worker]) as rss:
            resp = requests.post(server.url + '/', data=body, timeout=300)
            assert resp.status_code == 200, resp.text
            digest = resp.text.strip()
            assert digest == body.hasher.hexdigest()
            got = hashlib.sha256()
            with requests.get(
                f'{server.url}/files/{digest}', stream=True, timeout=300
            ) as r:
                assert r.headers['Content-Length'] == str(size)
                for chunk in r.iter_content(MiB):
                    got.update(chunk)
            time.sleep(0.2)  # one more sample after the last byte
        assert got.hexdigest() == digest
        growth = (rss.peak - before) / 1024
        assert growth < 32, f'worker RSS grew by {growth:.1f} MiB'
        assert leftovers(backend) == (
            sorted([backend.key_for(digest), backend.key_for(warm.text.strip())]),
            [],
        )
    finally:
        server.stop()
