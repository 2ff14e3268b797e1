"""``/metrics``: counts in one process (WebTest) and summed over gunicorn workers."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import webtest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import sha256
from tests.servers import Server, start_gunicorn
from wsgi_store.config import Config
from wsgi_store.ops import hooks

JSON = {'Accept': 'application/json'}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(samples: Samples, route: str, method: str, status: int) -> float:
    key = (('method', method), ('route', route), ('status', str(status)))
    return samples.get(('wsgi_store_http_requests_total', key), 0.0)


def scrape(app: webtest.TestApp) -> Samples:
    resp = app.get('/metrics')
    assert resp.content_type == 'text/plain'
    return parse(resp.text)


def value(samples: Samples, name: str) -> float:
    return samples.get((name, ()), 0.0)


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    """WebTest apps use a private registry unless a test opts in."""
    monkeypatch.delenv('PROMETHEUS_MULTIPROC_DIR', raising=False)


# -- one process (WebTest) -------------------------------------------------------
def test_requests_by_route_method_and_status(app):
    for _ in range(3):
        app.get('/healthz')
    app.get('/files/' + 'a' * 64, status=404)
    app.get('/files/zz', status=400)
    app.get('/no/such/thing', status=404)
    app.request('/files/missing', method='GET', status=405)
    app.request('/healthz', method='PATCH', status=405)
    app.app(  # an unknown method (Falcon: 400) must not become a label value
        {**webtest.TestRequest.blank('/healthz').environ, 'REQUEST_METHOD': 'BREW'},
        lambda status, headers, exc_info=None: None,
    )
    samples = scrape(app)
    assert requests_total(samples, '/healthz', 'GET', 200) == 3
    assert requests_total(samples, '/files/{file_hash}', 'GET', 404) == 1
    assert requests_total(samples, '/files/{file_hash}', 'GET', 400) == 1
    assert requests_total(samples, 'unmatched', 'GET', 404) == 1
    assert requests_total(samples, '/files/missing', 'GET', 405) == 1
    assert requests_total(samples, '/healthz', 'PATCH', 405) == 1
    assert requests_total(samples, '/healthz', 'other', 400) == 1
    assert not any('BREW' in str(key) for key in samples)
    # No raw path ever becomes a label value.
    assert not any('/no/such' in str(key) for key in samples)


def test_duration_histogram_counts_every_request(app):
    for _ in range(4):
        app.get('/healthz')
    samples = scrape(app)
    labels = (('method', 'GET'), ('route', '/healthz'))
    count = samples[('wsgi_store_http_request_duration_seconds_count', labels)]
    bucket = tuple(sorted((*labels, ('le', '+Inf'))))
    inf = samples[('wsgi_store_http_request_duration_seconds_bucket', bucket)]
    assert count == inf == 4
    assert samples[('wsgi_store_http_request_duration_seconds_sum', labels)] > 0


def test_objects_created_deduplicated_deleted(app):
    hashes = [
        app.post('/files', b'm%d' % i, headers=JSON).json['hash'] for i in range(3)
    ]
    app.post('/', b'm0', headers=JSON)
    app.put(f'/files/{hashes[1]}', b'm1', headers=JSON)
    app.delete(f'/files/{hashes[0]}')
    app.delete(f'/?file_hash={hashes[2]}')
    app.delete(f'/files/{hashes[0]}', status=404)
    samples = scrape(app)
    assert value(samples, 'wsgi_store_objects_created_total') == 3
    assert value(samples, 'wsgi_store_objects_deduplicated_total') == 2
    assert value(samples, 'wsgi_store_objects_deleted_total') == 2


def test_created_counted_for_plain_text_answers(app):
    app.post('/files', b'plain')
    app.post('/files', b'plain')
    samples = scrape(app)
    assert value(samples, 'wsgi_store_objects_created_total') == 1
    assert value(samples, 'wsgi_store_objects_deduplicated_total') == 1


def test_bytes_uploaded_and_downloaded(app):
    big = os.urandom(200 * 1024)
    h = app.post('/files', big).text.strip()
    small = app.post('/', b'0123456789').text.strip()
    app.get(f'/files/{h}')
    app.get(f'/?file_hash={small}')
    app.get(f'/files/{h}', headers={'Range': 'bytes=0-99'}, status=206)
    app.head(f'/files/{h}')  # no body: not a download
    app.get(f'/files/{h}', headers={'If-None-Match': f'"{h}"'}, status=304)
    samples = scrape(app)
    assert value(samples, 'wsgi_store_upload_bytes_total') == len(big) + 10
    assert value(samples, 'wsgi_store_download_bytes_total') == len(big) + 10 + 100


def test_chunked_and_refused_uploads_count_bytes_read(make_app):
    app = make_app(max_upload_bytes=1000)
    req = webtest.TestRequest.blank('/files', method='POST')
    req.environ['wsgi.input'] = io.BytesIO(b'c' * 700)
    req.environ['wsgi.input_terminated'] = True
    req.environ.pop('CONTENT_LENGTH', None)
    req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
    assert req.get_response(app.app).status_int == 200
    app.post('/files', b'x' * 1001, status=413)  # refused from Content-Length
    samples = scrape(app)
    assert value(samples, 'wsgi_store_upload_bytes_total') == 700


@pytest.mark.parametrize('accept', ['application/json', 'text/plain'])
def test_digest_mismatches(app, accept):
    wrong = sha256(b'something else')
    app.put(f'/files/{wrong}', b'body', headers={'Accept': accept}, status=400)
    app.post(f'/?file_hash={wrong}', b'body', headers={'Accept': accept}, status=400)
    app.post(
        '/files',
        upload_files=[('file', 'f.bin', b'body')],
        headers={'Content-Digest': 'sha-256=:' + 'A' * 43 + '=:', 'Accept': accept},
        status=400,
    )
    app.post('/?file_hash=zz', b'body', status=400)  # invalid hash: not a mismatch
    samples = scrape(app)
    assert value(samples, 'wsgi_store_digest_mismatches_total') == 3
    assert value(samples, 'wsgi_store_objects_created_total') == 0


def test_free_bytes_and_inodes_at_scrape_time(app, store_dir):
    samples = scrape(app)
    st = os.statvfs(store_dir)
    free = value(samples, 'wsgi_store_free_bytes')
    assert free > 0
    # Other processes write too: the same order of magnitude is all that is sure.
    assert abs(free - st.f_bavail * st.f_frsize) < max(free, 1) * 0.5
    assert ('wsgi_store_free_inodes', ()) in samples


def test_openmetrics_when_asked(app):
    resp = app.get('/metrics', headers={'Accept': 'application/openmetrics-text'})
    assert resp.content_type == 'application/openmetrics-text'
    assert resp.text.rstrip().endswith('# EOF')
    assert resp.headers['Cache-Control'] == 'no-store'


def test_metrics_can_be_disabled(make_app):
    app = make_app(metrics=False)
    app.get('/metrics', status=404)
    app.get('/healthz')  # no middleware, still served


def test_two_apps_in_one_process_count_separately(make_app):
    first, second = make_app(), make_app()
    first.get('/healthz')
    assert requests_total(scrape(second), '/healthz', 'GET', 200) == 0
    assert requests_total(scrape(first), '/healthz', 'GET', 200) == 1


def test_multiprocess_mode_in_process(monkeypatch, store_dir, tmp_path):
    """With the variable set, values go through files and scrapes read them."""
    from wsgi_store.app import create_app

    mp = tmp_path / 'mp'
    mp.mkdir()
    monkeypatch.setenv('PROMETHEUS_MULTIPROC_DIR', str(mp))
    app = webtest.TestApp(create_app(Config(store_dir=store_dir)))
    for _ in range(5):
        app.get('/healthz')
    assert requests_total(scrape(app), '/healthz', 'GET', 200) == 5
    assert list(mp.glob('counter_*.db'))


# -- gunicorn, 2 workers ---------------------------------------------------------
def per_worker_requests(mp: Path, route: str) -> dict[int, float]:
    """Requests on ``route`` counted in each worker's own file."""
    counts: dict[int, float] = {}
    for path in mp.glob('counter_*.db'):
        pid = int(path.stem.split('_')[1])
        for key, val, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _name, sample, labels, _help = json.loads(key)
            if sample.endswith('_total') and labels.get('route') == route:
                counts[pid] = counts.get(pid, 0.0) + val
    return counts


def metrics_dirs(tmpdir: Path, port: int) -> list[Path]:
    return sorted(tmpdir.glob(f'{hooks.METRICS_DIR_PREFIX}{port}-*'))


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.fixture
def gunicorn2(tmp_path, monkeypatch) -> Iterator[tuple[Server, Path]]:
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    monkeypatch.setenv('TMPDIR', str(tmpdir))
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=2, threads=2)
    try:
        yield server, tmpdir
    finally:
        server.stop()


def get_scrape(server: Server) -> Samples:
    resp = requests.get(server.url + '/metrics', timeout=10)
    assert resp.status_code == 200
    return parse(resp.text)


@pytest.mark.e2e
def test_counts_sum_over_workers_and_survive_a_worker_exit(gunicorn2):
    server, tmpdir = gunicorn2
    (mp,) = metrics_dirs(tmpdir, server.port)
    assert mp.name.startswith(f'{hooks.METRICS_DIR_PREFIX}{server.port}-')
    sent = sum(per_worker_requests(mp, '/healthz').values())  # start_gunicorn's poll
    # Each request on a fresh connection; stop once both workers served some.
    for _ in range(50):
        for _ in range(20):
            assert requests.get(server.url + '/healthz', timeout=10).ok
            sent += 1
        if len([n for n in per_worker_requests(mp, '/healthz').values() if n]) >= 2:
            break
    per_worker = per_worker_requests(mp, '/healthz')
    assert len([n for n in per_worker.values() if n]) == 2, per_worker
    assert sum(per_worker.values()) == sent
    samples = get_scrape(server)
    assert requests_total(samples, '/healthz', 'GET', 200) == sent
    assert value(samples, 'wsgi_store_free_bytes') > 0

    # Uploads on either worker add up too.
    for i in range(6):
        r = requests.post(server.url + '/files', data=b'w%d' % (i % 4), headers=JSON)
        assert r.status_code == 200
    samples = get_scrape(server)
    assert value(samples, 'wsgi_store_objects_created_total') == 4
    assert value(samples, 'wsgi_store_objects_deduplicated_total') == 2

    # A worker that exits leaves its counts behind: totals never go backwards.
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGTERM)
    wait_for(
        lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
        30,
        'gunicorn did not replace the worker',
    )
    samples = get_scrape(server)
    assert requests_total(samples, '/healthz', 'GET', 200) == sent
    assert value(samples, 'wsgi_store_objects_created_total') == 4


@pytest.mark.e2e
def test_private_metrics_dir_is_removed_at_exit(tmp_path, monkeypatch):
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    dead = tmpdir / f'{hooks.METRICS_DIR_PREFIX}0-999999999-stale'
    monkeypatch.setenv('TMPDIR', str(tmpdir))
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=2, threads=1)
    try:
        port_dirs = metrics_dirs(tmpdir, server.port)
        assert len(port_dirs) == 1 and port_dirs[0].is_dir()
        assert str(server.proc.pid) in port_dirs[0].name
        assert requests.get(server.url + '/metrics', timeout=10).ok
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert metrics_dirs(tmpdir, server.port) == []
    assert not dead.exists()


@pytest.mark.e2e
def test_configured_metrics_dir_is_emptied_at_start_and_kept(tmp_path):
    mp = tmp_path / 'metrics'
    mp.mkdir()
    stale = mp / 'counter_1.db'
    stale.write_bytes(b'left by a previous run')
    server = start_gunicorn(
        tmp_path, tmp_path / 'store', workers=2, threads=1, metrics_dir=mp
    )
    try:
        assert not stale.exists()
        requests.get(server.url + '/healthz', timeout=10)
        samples = get_scrape(server)
        assert requests_total(samples, '/healthz', 'GET', 200) >= 1
    finally:
        server.stop()
    assert mp.is_dir()


def test_prepare_metrics_dir_sweeps_only_dead_masters(tmp_path, monkeypatch):
    monkeypatch.setattr('tempfile.tempdir', str(tmp_path))
    monkeypatch.setenv('PROMETHEUS_MULTIPROC_DIR', '')  # restored (unset) afterwards
    prefix = f'{hooks.METRICS_DIR_PREFIX}9000-'
    dead = tmp_path / f'{prefix}999999999-x'
    live = tmp_path / f'{prefix}{os.getpid()}-y'
    other_port = tmp_path / f'{hooks.METRICS_DIR_PREFIX}9001-999999999-z'
    for d in (dead, live, other_port):
        d.mkdir()
    registered = []
    monkeypatch.setattr(hooks.atexit, 'register', lambda *a: registered.append(a))
    path = hooks.prepare_metrics_dir(Config(store_dir=tmp_path / 's', port=9000))
    assert os.environ['PROMETHEUS_MULTIPROC_DIR'] == str(path)
    assert path.is_dir() and path.parent == tmp_path
    assert not dead.exists() and live.exists() and other_port.exists()
    # The exit handler removes the directory in the master only.
    func, target, owner = registered[0]
    func(target, owner + 1)
    assert path.exists()
    func(target, owner)
    assert not path.exists()
