"""Resumable uploads through the nginx site ``filestorectl nginx-config`` makes.

nginx must hand each ``PATCH`` byte to the app as it arrives (the app
acknowledges only what it flushed; a buffered body would vanish with a cut
connection) and must not add caching headers to upload answers.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from tusclient import client as tus_client

from tests.servers import (
    Server,
    filestorectl,
    free_port,
    require_binary,
    start_gunicorn,
    start_nginx,
    wait_until,
)
from tests.test_tus_e2e import TUS, data_size, make_file, start_patch
from wsgi_store.config import Config
from wsgi_store.ops.nginx import site_config

pytestmark = pytest.mark.e2e
MiB = 1 << 20
MAX_SIZE = 64 * MiB


@dataclass
class Site:
    app: Server
    nginx: Server
    store: Path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    require_binary('nginx', '/usr/sbin/nginx')
    store = tmp_path / 'store'
    app = start_gunicorn(
        tmp_path, store, workers=1, threads=4, max_upload_bytes=MAX_SIZE
    )
    nginx = None
    # Not under pytest's tmp dir (0700): nginx's workers write proxy temps.
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-tus-nginx-'))
    work.chmod(0o755)
    try:
        port = free_port()
        generated = filestorectl(
            'nginx-config',
            '--store', str(store),
            '--host', '127.0.0.1',
            '--port', str(app.port),
            '--max-size', str(MAX_SIZE),
            '--listen-port', f'127.0.0.1:{port}',
            '--access-log', str(tmp_path / 'access.log'),
            '--no-direct-reads',
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        nginx = start_nginx(work, generated.stdout, port)
        yield Site(app, nginx, store)
    finally:
        if nginx is not None:
            nginx.stop()
        app.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_generated_uploads_location_streams_with_the_store_limit() -> None:
    text = site_config(Config(store_dir=Path('/srv/s')).replace(max_upload_bytes=999))
    block = text.split('location ^~ /uploads {', 1)[1].split('}', 1)[0]
    assert 'proxy_request_buffering off;' in block
    assert 'proxy_buffering off;' in block
    assert 'client_max_body_size 999;' in block
    assert 'add_header' not in block and 'expires' not in block


def test_tuspy_upload_through_nginx(site: Site, tmp_path: Path) -> None:
    path = tmp_path / 'through.bin'
    digest = make_file(path, 5 * MiB + 3)
    uploader = tus_client.TusClient(site.nginx.url + '/uploads').uploader(
        str(path), chunk_size=2 * MiB, metadata={'filename': 'through.bin'},
        upload_checksum=True,
    )  # fmt: skip
    uploader.upload(stop_at=2 * MiB)
    resumed = tus_client.TusClient(site.nginx.url + '/uploads').uploader(
        str(path), url=uploader.url, chunk_size=2 * MiB, upload_checksum=True
    )
    assert resumed.offset == 2 * MiB
    resumed.upload()
    answer = requests.head(uploader.url, headers=TUS, timeout=30)
    assert answer.status_code == 200
    assert answer.headers['Upload-File-Hash'] == digest
    location = answer.headers['Content-Location']
    assert location == f'/files/{digest}?filename=through.bin'
    got = requests.get(site.nginx.url + location, timeout=60)
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_patch_bytes_reach_the_app_before_the_body_ends(
    site: Site, tmp_path: Path
) -> None:
    """Unbuffered: half a PATCH is on the app's disk while the client still
    sends; cut there, the bytes that arrived are the upload's offset."""
    path = tmp_path / 'half.bin'
    make_file(path, 4 * MiB)
    data = path.read_bytes()
    created = requests.post(
        site.nginx.url + '/uploads',
        headers={**TUS, 'Upload-Length': str(len(data))},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    url = site.nginx.url + created.headers['Location']
    sock = start_patch(url, 0, len(data), data[: 2 * MiB])
    try:
        wait_until(
            lambda: data_size(site.store, url) >= MiB,
            30,
            'the app to receive part of the PATCH while the body is unfinished',
        )
    finally:
        sock.close()

    def offset() -> int:
        return int(requests.head(url, headers=TUS, timeout=30).headers['Upload-Offset'])

    wait_until(lambda: offset() >= MiB, 30, 'the bytes that arrived to be committed')
    assert offset() <= 2 * MiB


def test_upload_answers_get_no_caching_headers_from_nginx(site: Site) -> None:
    """Through nginx, a HEAD of an upload carries exactly the app's headers
    that matter for caching (no-store; no ETag, Expires or Last-Modified)."""
    created = requests.post(
        site.nginx.url + '/uploads',
        headers={**TUS, 'Upload-Length': '3'},
        timeout=30,
    )
    path = created.headers['Location']
    via_nginx = requests.head(site.nginx.url + path, headers=TUS, timeout=30)
    direct = requests.head(site.app.url + path, headers=TUS, timeout=30)
    assert via_nginx.status_code == direct.status_code == 200
    for name in ('Cache-Control', 'ETag', 'Expires', 'Last-Modified', 'Age'):
        assert via_nginx.headers.get(name) == direct.headers.get(name), name
    assert via_nginx.headers['Cache-Control'] == 'no-store'


def test_patch_over_the_limit_is_413_from_nginx_with_tus_resumable(site: Site) -> None:
    created = requests.post(
        site.nginx.url + '/uploads',
        headers={**TUS, 'Upload-Defer-Length': '1'},
        timeout=30,
    )
    url = site.nginx.url + created.headers['Location']
    answer = requests.patch(
        url,
        data=b'x' * (MAX_SIZE + 1),
        headers={
            **TUS,
            'Upload-Offset': '0',
            'Content-Type': 'application/offset+octet-stream',
        },
        timeout=60,
    )
    assert answer.status_code == 413
    assert answer.headers['Tus-Resumable'] == '1.0.0'
    assert answer.headers['Content-Type'] == 'application/problem+json'
