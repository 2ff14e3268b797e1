"""``/metrics`` for resumable uploads: created, completed, expired, bytes."""

from __future__ import annotations

import os
import time

import requests

from tests.servers import start_gunicorn
from tests.test_metrics import parse, scrape, value
from tests.test_tus import OCTETS, TUS, create, patch, upload_dir
from wsgi_store.tus.sessions import OFFSET


def expire(store_dir, url: str) -> None:
    past = time.time() - 86401
    os.utime(upload_dir(store_dir, url) / OFFSET, (past, past))


def test_tus_metrics_count_created_completed_expired_and_bytes(app, store_dir):
    done = create(app, 6)
    patch(app, done, 0, b'abc')
    patch(app, done, 3, b'def')  # completes: an object
    unfinished = create(app, 10)
    patch(app, unfinished, 0, b'xy')
    patch(app, unfinished, 0, b'zz', status=409)  # refused: no bytes counted
    stale = create(app, 4)
    expire(store_dir, stale)
    app.head(stale, headers=TUS, status=410)
    app.head(stale, headers=TUS, status=410)  # the same upload: counted once
    patch(app, stale, 0, b'ab', status=410)
    samples = scrape(app)
    assert value(samples, 'wsgi_store_tus_uploads_created_total') == 3
    assert value(samples, 'wsgi_store_tus_uploads_completed_total') == 1
    assert value(samples, 'wsgi_store_tus_uploads_expired_total') == 1
    assert value(samples, 'wsgi_store_tus_upload_bytes_total') == 8
    # tus bodies are not counted again as plain uploads
    assert value(samples, 'wsgi_store_upload_bytes_total') == 0


def test_tus_metrics_count_creation_with_upload_and_concatenation(app):
    resp = app.post(
        '/uploads',
        b'whole',
        headers={**TUS, 'Upload-Length': '5', 'Content-Type': OCTETS},
        status=201,
    )
    assert resp.headers['Upload-Offset'] == '5'
    parts = []
    for chunk in (b'par', b'ts'):
        url = create(app, len(chunk), **{'Upload-Concat': 'partial'})
        patch(app, url, 0, chunk)
        parts.append(url)
    app.post(
        '/uploads',
        headers={**TUS, 'Upload-Concat': 'final;' + ' '.join(parts)},
        status=201,
    )
    samples = scrape(app)
    assert value(samples, 'wsgi_store_tus_uploads_created_total') == 4
    assert value(samples, 'wsgi_store_tus_uploads_completed_total') == 2
    assert value(samples, 'wsgi_store_tus_upload_bytes_total') == 10


def test_tus_metrics_summed_over_gunicorn_workers(tmp_path):
    """Two workers, many connections: the scrape sums each worker's counts;
    an upload that expired is counted once however many workers see it."""
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=2, threads=2, upload_expiry=3)
    try:
        urls = []
        for i in range(6):
            with requests.Session() as s:  # a new connection: any worker
                r = s.post(
                    server.url + '/uploads',
                    data=b'%d' % i * 100,
                    headers={**TUS, 'Upload-Length': '100', 'Content-Type': OCTETS},
                    timeout=30,
                )
                assert r.status_code == 201, r.text
                urls.append(r.headers['Location'])
        stale = requests.post(
            server.url + '/uploads',
            headers={**TUS, 'Upload-Length': '9'},
            timeout=30,
        ).headers['Location']
        deadline = time.monotonic() + 30
        statuses = []
        while time.monotonic() < deadline and statuses.count(410) < 6:
            with requests.Session() as s:
                statuses.append(
                    s.head(server.url + stale, headers=TUS, timeout=30).status_code
                )
            time.sleep(0.2)
        assert statuses.count(410) == 6, statuses
        samples = parse(requests.get(server.url + '/metrics', timeout=30).text)
    finally:
        server.stop()
    assert value(samples, 'wsgi_store_tus_uploads_created_total') == 7
    assert value(samples, 'wsgi_store_tus_uploads_completed_total') == 6
    assert value(samples, 'wsgi_store_tus_uploads_expired_total') == 1
    assert value(samples, 'wsgi_store_tus_upload_bytes_total') == 600
