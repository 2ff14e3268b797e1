"""Resumable uploads on the S3 backend (the real Ceph RGW of tests/s3env.py):
the upload's state, its parts and its pending tail live in the bucket, so any
node can take the next PATCH."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import webtest
from tusclient import client as tus_client

from tests import s3env
from tests.servers import (
    Server,
    children_of,
    free_port,
    pid_alive,
    require_binary,
    start_gunicorn,
    start_nginx,
    wait_until,
)
from tests.test_tus import OCTETS, TUS, create, patch
from tests.test_tus_e2e import make_file, start_patch
from wsgi_store.app import create_app
from wsgi_store.backends.s3 import S3Backend
from wsgi_store.ops.nginx import site_config
from wsgi_store.tus.upkeep import UploadCounts, count_uploads, sweep_expired

pytestmark = [pytest.mark.s3]
MiB = 1 << 20
PART = 5 * MiB


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from s3env.prefix_fixture(request)


@pytest.fixture
def s3app(prefix: str, tmp_path: Path) -> webtest.TestApp:
    config = s3env.s3_config(prefix, store_dir=tmp_path / 'local', s3_part_bytes=PART)
    return webtest.TestApp(
        create_app(config), extra_environ={'wsgi.input_terminated': True}
    )


def upload_keys(prefix: str, url: str) -> list[str]:
    """Keys of one upload's state, relative to its directory."""
    base = f'{prefix}/uploads/{url.rsplit("/", 1)[1]}/'
    return [k[len(base) :] for k in s3env.list_keys(prefix) if k.startswith(base)]


def state_of(prefix: str, url: str) -> dict:
    key = f'{prefix}/uploads/{url.rsplit("/", 1)[1]}/state.json'
    body = s3env.client().get_object(Bucket=s3env.bucket(), Key=key)['Body']
    return json.loads(body.read())


def test_small_patches_collect_in_a_tail_object_then_become_parts(s3app, prefix):
    data = os.urandom(13 * MiB + 5)
    url = create(s3app, len(data))
    cuts = [0, MiB, 2 * MiB, 3 * MiB, 7 * MiB, 13 * MiB, len(data)]
    seen = []
    for start, end in itertools.pairwise(cuts):
        patch(s3app, url, start, data[start:end])
        if end < len(data):
            state = state_of(prefix, url)
            tails = [k for k in upload_keys(prefix, url) if k.startswith('tail-')]
            seen.append((len(state['parts']), state['offset'], len(tails)))
    # 1, 2 and 3 MiB wait in the store as one tail object; at 7 MiB one part of
    # 5 MiB went out and 2 MiB wait; at 13 MiB two parts and 3 MiB of tail.
    assert seen == [
        (0, MiB, 1),
        (0, 2 * MiB, 1),
        (0, 3 * MiB, 1),
        (1, 7 * MiB, 1),
        (2, 13 * MiB, 1),
    ]
    head = s3app.head(url, headers=TUS)
    digest = hashlib.sha256(data).hexdigest()
    assert head.headers['Upload-File-Hash'] == digest
    assert s3app.get(f'/files/{digest}').body == data
    assert upload_keys(prefix, url) == ['state.json']  # tail and data are gone
    assert s3env.list_uploads(prefix) == []  # no multipart upload left


def test_s3_upload_in_one_request_and_an_empty_upload(s3app, prefix):
    data = os.urandom(6 * MiB + 1)
    resp = s3app.post(
        '/uploads',
        data,
        headers={**TUS, 'Upload-Length': str(len(data)), 'Content-Type': OCTETS},
        status=201,
    )
    assert resp.headers['Upload-File-Hash'] == hashlib.sha256(data).hexdigest()
    empty = create(s3app, 0)
    head = s3app.head(empty, headers=TUS)
    assert head.headers.get('Upload-File-Hash') in (None, hashlib.sha256().hexdigest())
    patch(s3app, empty, 0, b'')
    head = s3app.head(empty, headers=TUS)
    assert head.headers['Upload-File-Hash'] == hashlib.sha256().hexdigest()
    assert s3env.list_uploads(prefix) == []


def test_s3_wrong_offset_checksum_and_delete(s3app, prefix):
    url = create(s3app, 10)
    patch(s3app, url, 0, b'abc')
    patch(s3app, url, 1, b'zz', status=409)
    patch(
        s3app,
        url,
        3,
        b'def',
        status=460,
        **{'Upload-Checksum': 'sha1 ' + 'A' * 27 + '='},
    )
    assert s3app.head(url, headers=TUS).headers['Upload-Offset'] == '3'
    s3app.delete(url, headers=TUS, status=204)
    s3app.head(url, headers=TUS, status=404)
    assert upload_keys(prefix, url) == []


def test_s3_concatenation_is_refused_with_400(s3app):
    options = s3app.options('/uploads', status=204)
    assert 'concatenation' not in options.headers['Tus-Extension'].split(',')
    assert 'creation' in options.headers['Tus-Extension'].split(',')
    resp = s3app.post(
        '/uploads',
        headers={**TUS, 'Upload-Length': '3', 'Upload-Concat': 'partial'},
        status=400,
    )
    assert 'concatenation' in resp.json['detail']


@pytest.mark.e2e
def test_upload_started_on_node_a_is_finished_on_node_b(prefix, tmp_path):
    """Two gunicorn nodes on one bucket and prefix, nothing shared on disk."""
    settings = s3env.node_settings(prefix, PART)
    path = tmp_path / 'nodes.bin'
    digest = make_file(path, 12 * MiB + 9)
    with contextlib.ExitStack() as stack:
        nodes: list[Server] = []
        for name in ('a', 'b'):
            node = start_gunicorn(tmp_path, tmp_path / name, **settings)
            stack.callback(node.stop)
            nodes.append(node)
        a, b = nodes
        first = tus_client.TusClient(a.url + '/uploads').uploader(
            str(path), chunk_size=3 * MiB, upload_checksum=True
        )
        first.upload(stop_at=6 * MiB)
        upload_path = first.url.split(str(a.port), 1)[1]
        on_b = b.url + upload_path
        head = requests.head(on_b, headers=TUS, timeout=30)
        assert head.headers['Upload-Offset'] == str(6 * MiB)
        second = tus_client.TusClient(b.url + '/uploads').uploader(
            str(path), url=on_b, chunk_size=3 * MiB, upload_checksum=True
        )
        assert second.offset == 6 * MiB
        second.upload()
        for node in nodes:
            head = requests.head(node.url + upload_path, headers=TUS, timeout=30)
            assert head.headers['Upload-File-Hash'] == digest
        got = requests.get(a.url + f'/files/{digest}', timeout=60)
        assert hashlib.sha256(got.content).hexdigest() == digest
    assert s3env.list_uploads(prefix) == []


def test_gc_keeps_live_s3_uploads_and_removes_expired_ones(prefix, tmp_path):
    """``sweep_temp(0)`` (gc) leaves a live upload's multipart upload alone;
    the upload sweep (gc) removes an expired upload's state, tail and parts."""
    config = s3env.s3_config(prefix, store_dir=tmp_path / 'local', s3_part_bytes=PART)
    app = webtest.TestApp(
        create_app(config), extra_environ={'wsgi.input_terminated': True}
    )
    data = os.urandom(6 * MiB)
    live = create(app, len(data) + 3)
    patch(app, live, 0, data)  # one part sent, 1 MiB of tail
    backend = S3Backend.from_config(config)
    try:
        backend.sweep_temp(0)
    finally:
        backend.close()
    assert len(s3env.list_uploads(prefix)) == 1
    patch(app, live, len(data), b'end')
    digest = hashlib.sha256(data + b'end').hexdigest()
    assert app.head(live, headers=TUS).headers['Upload-File-Hash'] == digest

    stale = create(app, len(data) + 3)
    patch(app, stale, 0, data)
    assert count_uploads(config) == UploadCounts(live=2, expired=0)
    gone = config.replace(upload_expiry=0)
    assert count_uploads(gone) == UploadCounts(live=0, expired=2)
    assert sweep_expired(gone) == 2
    assert upload_keys(prefix, stale) == []
    assert s3env.list_uploads(prefix) == []


def test_s3_checksum_mismatch_across_a_part_leaves_no_multipart_upload(s3app, prefix):
    data = os.urandom(6 * MiB)
    url = create(s3app, 2 * len(data))
    wrong = 'sha1 ' + 'A' * 27 + '='
    patch(s3app, url, 0, data, status=460, **{'Upload-Checksum': wrong})
    assert s3env.list_uploads(prefix) == []  # the part it sent was aborted
    assert s3app.head(url, headers=TUS).headers['Upload-Offset'] == '0'
    patch(s3app, url, 0, data)
    assert s3app.head(url, headers=TUS).headers['Upload-Offset'] == str(len(data))


def test_s3_upload_locked_by_another_node_is_423(s3app, prefix, monkeypatch):
    from wsgi_store.tus import s3uploads

    url = create(s3app, 4)
    lock = f'{prefix}/uploads/{url.rsplit("/", 1)[1]}/lock'
    s3env.client().put_object(Bucket=s3env.bucket(), Key=lock, Body=b'')
    monkeypatch.setattr(s3uploads, 'LOCK_WAIT', 0.5)
    patch(s3app, url, 0, b'ab', status=423)
    s3app.delete(url, headers=TUS, status=423)
    monkeypatch.setattr(s3uploads, 'LOCK_TTL', 0.0)  # a dead writer's lock
    patch(s3app, url, 0, b'ab')
    assert s3app.head(url, headers=TUS).headers['Upload-Offset'] == '2'


def test_s3_ietf_draft_with_an_open_length(s3app):
    v6 = {'Upload-Draft-Interop-Version': '6'}
    first, rest = os.urandom(6 * MiB), os.urandom(MiB)
    resp = s3app.post(
        '/uploads', first, headers={**v6, 'Upload-Complete': '?0'}, status=201
    )
    url = resp.headers['Location']
    assert s3app.head(url, headers=v6, status=204).headers['Upload-Offset'] == str(
        len(first)
    )
    done = s3app.patch(
        url,
        rest,
        headers={
            **v6,
            'Upload-Offset': str(len(first)),
            'Upload-Complete': '?1',
            'Content-Type': 'application/partial-upload',
        },
        status=200,
    )
    digest = hashlib.sha256(first + rest).hexdigest()
    assert done.headers['Upload-File-Hash'] == digest
    assert s3app.get(f'/files/{digest}').body == first + rest


@pytest.mark.e2e
def test_s3_upload_through_nginx_over_two_nodes_survives_losing_one(prefix, tmp_path):
    """Behind the generated nginx site, the PATCHes of one upload reach both
    nodes; with node A stopped half-way, node B finishes the upload."""
    require_binary('nginx', '/usr/sbin/nginx')
    config = s3env.s3_config(prefix)
    settings = s3env.node_settings(prefix, PART)
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-tus-s3-'))
    work.chmod(0o755)  # nginx's workers keep temp files here
    path = tmp_path / 'behind.bin'
    digest = make_file(path, 16 * MiB + 1)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        nodes = []
        for name in ('a', 'b'):
            node = start_gunicorn(work, work / name, **settings)
            stack.callback(node.stop)
            nodes.append(node)
        port = free_port()
        access_log = work / 'access.log'
        site = site_config(
            config,
            listen=f'127.0.0.1:{port}',
            upstreams=[f'127.0.0.1:{node.port}' for node in nodes],
            access_log=str(access_log),
            name='tus_s3',
        )
        nginx = start_nginx(work, site, port)
        stack.callback(nginx.stop)
        first = tus_client.TusClient(nginx.url + '/uploads').uploader(
            str(path), chunk_size=2 * MiB
        )
        first.upload(stop_at=8 * MiB)

        def upstreams() -> set[str]:
            lines = access_log.read_text().splitlines()
            return {
                line.split('upstream=', 1)[1].split()[0]
                for line in lines
                if '"PATCH /uploads/' in line and ' 204 ' in line
            }

        want = {f'127.0.0.1:{node.port}' for node in nodes}
        wait_until(lambda: upstreams() == want, 10, 'PATCHes on both nodes')
        nodes[0].stop()
        second = tus_client.TusClient(nginx.url + '/uploads').uploader(
            str(path), url=first.url, chunk_size=2 * MiB
        )
        assert second.offset == 8 * MiB
        second.upload()
        head = requests.head(first.url, headers=TUS, timeout=30)
        assert head.headers['Upload-File-Hash'] == digest
        got = requests.get(nginx.url + f'/files/{digest}', timeout=60)
        assert hashlib.sha256(got.content).hexdigest() == digest


@pytest.mark.e2e
def test_s3_worker_killed_mid_patch_on_node_a_then_resumed_on_node_b(prefix, tmp_path):
    """kill -9 while node A streams a PATCH (a part already in S3, its lock
    held): node B sees the acknowledged offset, gets 423 until the dead
    writer's lock is stale (30 s), then finishes; gc removes the dead writer's
    multipart upload with the expired upload."""
    config = s3env.s3_config(prefix)
    settings = s3env.node_settings(prefix, PART)
    path = tmp_path / 'killed.bin'
    digest = make_file(path, 12 * MiB)
    data = path.read_bytes()
    with contextlib.ExitStack() as stack:
        nodes = []
        for name in ('a', 'b'):
            node = start_gunicorn(tmp_path, tmp_path / name, **settings)
            stack.callback(node.stop)
            nodes.append(node)
        a, b = nodes
        uploader = tus_client.TusClient(a.url + '/uploads').uploader(
            str(path), chunk_size=2 * MiB
        )
        uploader.upload(stop_at=2 * MiB)  # acknowledged: must survive
        upload_path = uploader.url.split(str(a.port), 1)[1]
        [worker] = children_of(a.proc.pid)
        sock = start_patch(uploader.url, 2 * MiB, 10 * MiB, data[2 * MiB : 9 * MiB])
        try:
            wait_until(
                lambda: len(s3env.list_uploads(prefix)) == 1,
                30,
                'node A to send a part of the PATCH to S3',
            )
            os.kill(worker, signal.SIGKILL)
            wait_until(lambda: not pid_alive(worker), 15, 'the worker to die')
        finally:
            sock.close()
        on_b = b.url + upload_path
        head = requests.head(on_b, headers=TUS, timeout=30)
        assert head.headers['Upload-Offset'] == str(2 * MiB)
        rest = {**TUS, 'Content-Type': OCTETS, 'Upload-Offset': str(2 * MiB)}
        answers = []

        def resumed() -> bool:
            try:
                resp = requests.patch(
                    on_b, data=data[2 * MiB :], headers=rest, timeout=60
                )
            except requests.ConnectionError:  # 423 sent while the body was sent
                answers.append('reset')
                return False
            answers.append(resp.status_code)
            return resp.status_code == 204

        wait_until(resumed, 90, 'the dead writer lock to go stale')
        assert set(answers[:-1]) <= {423, 'reset'}, answers
        head = requests.head(on_b, headers=TUS, timeout=30)
        assert head.headers['Upload-File-Hash'] == digest
        got = requests.get(b.url + f'/files/{digest}', timeout=60)
        assert hashlib.sha256(got.content).hexdigest() == digest
    assert len(s3env.list_uploads(prefix)) == 1  # the dead writer's, until gc
    assert sweep_expired(config.replace(upload_expiry=0)) == 1
    assert s3env.list_uploads(prefix) == []
