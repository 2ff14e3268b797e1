"""End to end: real gunicorn from gunicorn.conf.py on a free loopback port."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.servers import Server, rss_kib, start_gunicorn

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp('e2e')
    srv = start_gunicorn(work, work / 'store')
    srv.extra['store'] = work / 'store'
    yield srv
    srv.stop()


@pytest.mark.parametrize('size', [0, 1, MiB])
def test_round_trip(server: Server, size: int) -> None:
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    resp = requests.post(server.url + '/', data=data, timeout=30)
    assert resp.status_code == 200 and resp.text == digest + '\n'
    got = requests.get(f'{server.url}/?file_hash={digest}', timeout=30)
    assert got.status_code == 200 and got.content == data
    assert got.headers['ETag'] == f'"{digest}"'
    assert (
        requests.delete(f'{server.url}/files/{digest}', timeout=30).status_code == 200
    )
    assert requests.get(f'{server.url}/files/{digest}', timeout=30).status_code == 404


def test_chunked_upload_through_gunicorn(server: Server) -> None:
    parts = [os.urandom(100_000) for _ in range(5)]
    digest = hashlib.sha256(b''.join(parts)).hexdigest()
    resp = requests.post(server.url + '/', data=iter(parts), timeout=30)  # chunked
    assert resp.text == digest + '\n'


def test_curl_seed_contract(server: Server, tmp_path: Path) -> None:
    curl = shutil.which('curl')
    if curl is None:
        pytest.skip('curl is not installed')
    photo = tmp_path / 'photo.jpg'
    photo.write_bytes(os.urandom(70_000))
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()

    def run(*args: str) -> str:
        return subprocess.run(
            [curl, '-s', '-f', *args],
            check=True,
            timeout=30,
            capture_output=True,
            text=True,
        ).stdout

    assert run('--data-binary', f'@{photo}', server.url + '/') == digest + '\n'
    assert run('-F', f'file=@{photo}', server.url + '/') == digest + '\n'
    copy = tmp_path / 'copy.jpg'
    run('-o', str(copy), f'{server.url}/?file_hash={digest}')
    assert copy.read_bytes() == photo.read_bytes()
    run('-X', 'DELETE', f'{server.url}/?file_hash={digest}')
    code = subprocess.run(
        [
            curl,
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            f'{server.url}/?file_hash={digest}',
        ],
        timeout=30,
        capture_output=True,
        text=True,
    ).stdout
    assert code == '404'


def _stream(total: int, seed: bytes, hasher: hashlib._Hash) -> Iterator[bytes]:
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    sent = 0
    while sent < total:
        chunk = block[: min(MiB, total - sent)]
        hasher.update(chunk)
        sent += len(chunk)
        yield chunk


def _max_worker_rss(server: Server) -> int:
    return max(rss_kib(pid) for pid in server.worker_pids())


def test_256mib_streamed_upload_and_download_keep_rss_flat(server: Server) -> None:
    """A 256 MiB body up and down grows no worker by more than 32 MiB."""
    requests.get(server.url + '/healthz', timeout=10)
    before = {pid: rss_kib(pid) for pid in server.worker_pids()}
    hasher = hashlib.sha256()
    resp = requests.post(
        server.url + '/', data=_stream(256 * MiB, b'big', hasher), timeout=300
    )
    digest = hasher.hexdigest()
    assert resp.status_code == 200 and resp.text == digest + '\n'
    down = hashlib.sha256()
    with requests.get(f'{server.url}/files/{digest}', stream=True, timeout=300) as got:
        for chunk in got.iter_content(MiB):
            down.update(chunk)
    assert down.hexdigest() == digest
    after = {pid: rss_kib(pid) for pid in server.worker_pids()}
    growth = max(after[pid] - before.get(pid, after[pid]) for pid in after)
    assert growth < 32 * 1024, f'worker RSS grew by {growth} KiB'
    requests.delete(f'{server.url}/files/{digest}', timeout=30)


def test_32_concurrent_uploads(server: Server) -> None:
    blobs = [os.urandom(200_000 + i) for i in range(32)]

    def upload(data: bytes) -> str:
        return requests.post(server.url + '/', data=data, timeout=60).text.strip()

    with ThreadPoolExecutor(32) as pool:
        hashes = list(pool.map(upload, blobs))
    assert hashes == [hashlib.sha256(b).hexdigest() for b in blobs]
    for digest, data in zip(hashes, blobs, strict=True):
        assert requests.get(f'{server.url}/files/{digest}', timeout=30).content == data


def test_same_content_from_8_threads(server: Server) -> None:
    data = os.urandom(3 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    barrier = threading.Barrier(8)

    def upload(_: int) -> tuple[int, str]:
        barrier.wait(10)
        resp = requests.post(server.url + '/', data=data, timeout=60)
        return resp.status_code, resp.text.strip()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(upload, range(8)))
    assert results == [(200, digest)] * 8
    store = server.extra['store']
    assert (store / digest[:2] / digest).read_bytes() == data
    assert list((store / 'tmp').iterdir()) == []
