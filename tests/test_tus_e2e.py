"""tus against real gunicorn with tuspy (PyPI), a client nobody here wrote.

Every wait is bounded; processes are stopped by their own handles; the worker
killed with -9 is found as a child of the gunicorn we started.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader

from tests.servers import (
    Server,
    ctl_env,
    filestorectl,
    pid_alive,
    rss_kib,
    start_gunicorn,
    wait_until,
)

pytestmark = pytest.mark.e2e
MiB = 1 << 20
TUS = {'Tus-Resumable': '1.0.0'}


def make_file(path: Path, size: int) -> str:
    """Random bytes (incompressible, no dedupe); returns their sha256."""
    digest = hashlib.sha256()
    with open(path, 'wb') as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def head(url: str) -> requests.Response:
    return requests.head(url, headers=TUS, timeout=30)


def check_stored(server: Server, url: str, path: Path, digest: str) -> None:
    answer = head(url)
    assert answer.status_code == 200
    assert answer.headers['Upload-File-Hash'] == digest
    location = answer.headers['Content-Location']
    assert location.startswith(f'/files/{digest}')
    got = hashlib.sha256()
    with requests.get(server.url + location, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_content(MiB):
            got.update(chunk)
    assert got.hexdigest() == digest
    assert os.path.getsize(path) == int(answer.headers['Upload-Length'])


@pytest.fixture
def server(tmp_path: Path):
    srv = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=4)
    yield srv
    srv.stop()


def test_tuspy_plain_upload_with_checksums(server, tmp_path):
    path = tmp_path / 'plain.bin'
    digest = make_file(path, 3 * MiB + 17)
    client = tus_client.TusClient(server.url + '/uploads')
    uploader = client.uploader(
        str(path),
        chunk_size=MiB,
        metadata={'filename': 'plain.bin'},
        upload_checksum=True,
    )
    uploader.upload()
    check_stored(server, uploader.url, path, digest)
    assert (
        head(uploader.url).headers['Content-Location'].endswith('?filename=plain.bin')
    )


def test_tuspy_cut_half_way_then_resumed_by_a_new_client(server, tmp_path):
    path = tmp_path / 'half.bin'
    digest = make_file(path, 4 * MiB)
    client = tus_client.TusClient(server.url + '/uploads')
    first = client.uploader(str(path), chunk_size=MiB)
    first.upload(stop_at=2 * MiB)
    assert int(head(first.url).headers['Upload-Offset']) == 2 * MiB
    second = tus_client.TusClient(server.url + '/uploads').uploader(
        str(path), url=first.url, chunk_size=MiB
    )
    assert second.offset == 2 * MiB
    second.upload()
    check_stored(server, first.url, path, digest)


def start_patch(url: str, offset: int, length: int, sent: bytes) -> socket.socket:
    """A PATCH announcing ``length`` bytes that sends only ``sent`` (then stalls)."""
    host, port = url.split('//', 1)[1].split('/', 1)[0].split(':')
    path = '/' + url.split('//', 1)[1].split('/', 1)[1]
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        (
            f'PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\n'
            'Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n'
            f'Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n'
        ).encode()
        + sent
    )
    return sock


def data_size(store: Path, url: str) -> int:
    try:
        return os.path.getsize(store / 'uploads' / url.rsplit('/', 1)[1] / 'data')
    except FileNotFoundError:
        return 0


def test_worker_killed_mid_patch_then_resumed(server, tmp_path):
    path = tmp_path / 'killed.bin'
    digest = make_file(path, 6 * MiB)
    data = path.read_bytes()
    uploader = tus_client.TusClient(server.url + '/uploads').uploader(
        str(path), chunk_size=2 * MiB
    )
    uploader.upload(stop_at=2 * MiB)  # acknowledged: must survive the kill
    [worker] = server.worker_pids()
    sock = start_patch(uploader.url, 2 * MiB, 4 * MiB, data[2 * MiB : 3 * MiB])
    try:
        wait_until(
            lambda: data_size(tmp_path / 'store', uploader.url) >= 2 * MiB + 512 * 1024,
            30,
            'the worker to write part of the PATCH',
        )
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not pid_alive(worker), 15, 'the worker to die')
    finally:
        sock.close()
    wait_until(lambda: server.worker_pids() not in ([], [worker]), 30, 'a new worker')
    resumed = tus_client.TusClient(server.url + '/uploads').uploader(
        str(path), url=uploader.url, chunk_size=2 * MiB
    )
    assert resumed.offset == 2 * MiB  # the unacknowledged tail was dropped
    resumed.upload()
    check_stored(server, uploader.url, path, digest)


def test_client_connection_cut_mid_patch_keeps_what_arrived(server, tmp_path):
    path = tmp_path / 'cut.bin'
    digest = make_file(path, 3 * MiB)
    data = path.read_bytes()
    uploader = tus_client.TusClient(server.url + '/uploads').uploader(
        str(path), chunk_size=3 * MiB
    )
    uploader.set_url(uploader.create_url())
    sock = start_patch(uploader.url, 0, 3 * MiB, data[: MiB + 5])
    wait_until(
        lambda: data_size(tmp_path / 'store', uploader.url) >= MiB,
        30,
        'the server to write part of the PATCH',
    )
    sock.close()
    wait_until(
        lambda: int(head(uploader.url).headers['Upload-Offset']) > 0,
        30,
        'the bytes that arrived to be committed',
    )
    resumed = tus_client.TusClient(server.url + '/uploads').uploader(
        str(path), url=uploader.url, chunk_size=MiB
    )
    assert 0 < resumed.offset <= MiB + 5
    resumed.upload()
    check_stored(server, uploader.url, path, digest)


def test_gunicorn_restarted_then_resumed(tmp_path):
    store = tmp_path / 'store'
    path = tmp_path / 'restart.bin'
    digest = make_file(path, 3 * MiB)
    server = start_gunicorn(tmp_path, store, workers=1, threads=2)
    try:
        uploader = tus_client.TusClient(server.url + '/uploads').uploader(
            str(path), chunk_size=MiB
        )
        uploader.upload(stop_at=MiB)
    finally:
        server.stop()
    server = start_gunicorn(tmp_path, store, port=server.port, workers=1, threads=2)
    try:
        resumed = tus_client.TusClient(server.url + '/uploads').uploader(
            str(path), url=uploader.url, chunk_size=MiB
        )
        assert resumed.offset == MiB
        resumed.upload()
        check_stored(server, uploader.url, path, digest)
    finally:
        server.stop()


def test_parallel_partial_uploads_concatenated(server, tmp_path):
    path = tmp_path / 'parallel.bin'
    digest = make_file(path, 3 * MiB + 3)
    data = path.read_bytes()
    cuts = [0, MiB + 1, 2 * MiB + 2, len(data)]
    urls: list[str | None] = [None] * 3
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            client = tus_client.TusClient(
                server.url + '/uploads', headers={'Upload-Concat': 'partial'}
            )
            part = io.BytesIO(data[cuts[index] : cuts[index + 1]])
            uploader = client.uploader(file_stream=part, chunk_size=512 * 1024)
            uploader.upload()
            urls[index] = uploader.url
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and all(urls), errors
    final = requests.post(
        server.url + '/uploads',
        headers={**TUS, 'Upload-Concat': 'final;' + ' '.join(urls)},  # type: ignore[arg-type]
        timeout=60,
    )
    assert final.status_code == 201, final.text
    assert final.headers['Upload-File-Hash'] == digest
    check_stored(server, server.url + final.headers['Location'], path, digest)


class WrongChecksumUploader(Uploader):
    """tuspy with a broken sha1: its Upload-Checksum never matches."""

    CHECKSUM_ALGORITHM_PAIR = ('sha1', lambda data: hashlib.sha1(data + b'!'))


def test_wrong_checksum_is_refused_with_460(server, tmp_path):
    path = tmp_path / 'sum.bin'
    make_file(path, 100_000)
    client = tus_client.TusClient(server.url + '/uploads')
    uploader = WrongChecksumUploader(
        str(path), client=client, chunk_size=50_000, upload_checksum=True
    )
    with pytest.raises(TusUploadFailed) as failed:
        uploader.upload()
    assert failed.value.status_code == 460
    assert int(head(uploader.url).headers['Upload-Offset']) == 0


def test_expired_upload_is_gone_and_swept(tmp_path):
    store = tmp_path / 'store'
    path = tmp_path / 'expire.bin'
    make_file(path, 2 * MiB)
    server = start_gunicorn(tmp_path, store, workers=1, threads=2, upload_expiry=4)
    try:
        uploader = tus_client.TusClient(server.url + '/uploads').uploader(
            str(path), chunk_size=MiB
        )
        uploader.upload(stop_at=MiB)
        assert 'Upload-Expires' in head(uploader.url).headers
        wait_until(lambda: head(uploader.url).status_code == 410, 20, 'expiry')
        with pytest.raises(TusCommunicationError) as failed:
            tus_client.TusClient(server.url + '/uploads').uploader(
                str(path), url=uploader.url
            )
        assert failed.value.status_code == 410
    finally:
        server.stop()
    env = ctl_env(WSGI_STORE_UPLOAD_EXPIRY='4')
    stats = filestorectl('stats', '--store', str(store), '--json', env=env)
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    assert (counts['resumable_uploads'], counts['resumable_expired']) == (0, 1)
    gc = filestorectl('gc', '--store', str(store), env=env)
    assert gc.returncode == 0, gc.stderr
    assert 'removed 1 expired resumable upload(s)' in gc.stdout
    assert not list((store / 'uploads').iterdir())


LARGE = int(os.environ.get('TUS_LARGE_MIB', '1024')) * MiB


def test_large_upload_keeps_worker_memory_flat(server, tmp_path):
    path = tmp_path / 'large.bin'
    digest = make_file(path, LARGE)
    [worker] = server.worker_pids()
    before = rss_kib(worker)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            try:
                peak[0] = max(peak[0], rss_kib(worker))
            except (LookupError, OSError):
                return

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        uploader = tus_client.TusClient(server.url + '/uploads').uploader(
            str(path), chunk_size=32 * MiB
        )
        started = time.monotonic()
        uploader.upload()
        took = time.monotonic() - started
    finally:
        stop.set()
        sampler.join(10)
    growth_mib = (peak[0] - before) / 1024
    print(f'{LARGE // MiB} MiB in {took:.1f} s, worker RSS +{growth_mib:.1f} MiB')
    assert growth_mib < 48, f'worker RSS grew by {growth_mib:.1f} MiB'
    check_stored(server, uploader.url, path, digest)
