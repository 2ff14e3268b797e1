"""tus against real gunicorn with tus-js-client (npm, run by Debian's nodejs).

A client nobody here wrote: a plain upload, an upload cut half-way by the
client and resumed by a new process (tus-js-client's own URL storage and
fingerprint), and a parallel upload (``parallelUploads``: partial uploads, then
a final concatenation). tus-js-client 4 sends no ``Upload-Checksum``, so the
wrong-checksum round trip stays with tuspy (tests/test_tus_e2e.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from tests.jsclients import last, run_node
from tests.servers import Server, start_gunicorn
from tests.test_tus_e2e import make_file

pytestmark = pytest.mark.e2e
MiB = 1 << 20
TUS = {'Tus-Resumable': '1.0.0'}


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp('tusjs')
    srv = start_gunicorn(work, work / 'store', workers=1, threads=4)
    yield srv
    srv.stop()


def upload(server: Server, path: Path, **options: object) -> list[dict]:
    return run_node(
        'tus-upload.mjs',
        {'endpoint': server.url + '/uploads', 'file': str(path), **options},
    )


def assert_stored(server: Server, success: dict, path: Path, digest: str) -> None:
    """The client saw the hash; HEAD and the download agree with the bytes."""
    assert success['hash'] == digest
    assert success['contentLocation'] == f'/files/{digest}?filename={path.name}'
    answer = requests.head(success['url'], headers=TUS, timeout=30)
    assert answer.status_code == 200
    assert answer.headers['Upload-File-Hash'] == digest
    got = requests.get(server.url + success['contentLocation'], timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_tus_js_client_plain_upload(server: Server, tmp_path: Path) -> None:
    path = tmp_path / 'plain.bin'
    digest = make_file(path, 3 * MiB + 5)
    events = upload(server, path, chunkSize=MiB)
    assert_stored(server, last(events, 'success'), path, digest)
    assert [e['accepted'] for e in events if e['event'] == 'chunk'] == [
        MiB,
        2 * MiB,
        3 * MiB,
        3 * MiB + 5,
    ]


def test_tus_js_client_cut_half_way_then_resumed_by_a_new_process(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / 'half.bin'
    digest = make_file(path, 4 * MiB)
    storage = tmp_path / 'tus-urls.json'
    first = upload(
        server, path, chunkSize=MiB, urlStorage=str(storage), stopAtBytes=2 * MiB
    )
    cut = last(first, 'aborted')
    assert 'success' not in [e['event'] for e in first]
    offset = requests.head(cut['url'], headers=TUS, timeout=30).headers['Upload-Offset']
    assert int(offset) == 2 * MiB
    second = upload(server, path, chunkSize=MiB, urlStorage=str(storage))
    assert last(second, 'resuming')['count'] == 1
    accepted = [e['accepted'] for e in second if e['event'] == 'chunk']
    assert accepted == [3 * MiB, 4 * MiB]  # only the second half was sent
    success = last(second, 'success')
    assert success['url'] == cut['url']
    assert_stored(server, success, path, digest)


def test_tus_js_client_parallel_uploads_are_concatenated(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / 'parallel.bin'
    digest = make_file(path, 3 * MiB + 7)
    events = upload(server, path, parallelUploads=3, chunkSize=512 * 1024)
    success = last(events, 'success')
    assert success['hash'] == digest
    answer = requests.head(success['url'], headers=TUS, timeout=30)
    assert answer.headers['Upload-Concat'].startswith('final;')
    assert len(answer.headers['Upload-Concat'].split(';', 1)[1].split()) == 3
    got = requests.get(server.url + f'/files/{digest}', timeout=60)
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_tus_js_client_announced_wrong_hash_stores_nothing(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / 'announced.bin'
    make_file(path, 100_000)
    wrong = '0' * 64
    events = upload(server, path, metadata={'file_hash': wrong})
    failure = last(events, 'error')
    assert failure['status'] is not None and 400 <= failure['status'] < 500
    assert 'success' not in [e['event'] for e in events]
    assert requests.head(server.url + f'/files/{wrong}', timeout=30).status_code == 404
