"""Scale-out: two stateless gunicorn nodes on one S3 prefix behind one nginx upstream.

Both nodes use the same bucket and prefix (each has its own store directory for
its local bits); the nginx site is the generated one (``wsgi_store.ops.nginx``) with
both nodes as upstream servers. Needs nginx and the S3 server of tests/s3env.py;
the run's prefix is removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import s3env
from tests.servers import (
    Server,
    free_port,
    require_binary,
    start_gunicorn,
    start_nginx,
    wait_until,
)
from wsgi_store.backends.fs import META_NAME
from wsgi_store.ops.nginx import site_config

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

MiB = 1 << 20
PART = 5 * MiB  # S3's smallest part: a body above it takes the multipart path
TIMEOUT = 60


@dataclass
class Cluster:
    prefix: str
    work: Path
    settings: dict[str, object]
    nodes: list[Server]
    nginx: Server
    access_log: Path


def start_node(
    stack: contextlib.ExitStack, work: Path, name: str, **settings: object
) -> Server:
    """A gunicorn node with its own store directory, stopped when ``stack`` closes."""
    node = start_gunicorn(work, work / name, **settings)
    stack.callback(node.stop)
    return node


@pytest.fixture(scope='module')
def cluster() -> Iterator[Cluster]:
    require_binary('nginx', '/usr/sbin/nginx')
    s3env.require_s3()
    prefix = s3env.new_prefix('scaleout')
    # Not under pytest's tmp dir (mode 0700): nginx's workers keep temp files here.
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-scaleout-'))
    work.chmod(0o755)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        stack.callback(s3env.cleanup, prefix)
        settings = s3env.node_settings(prefix, PART)
        nodes = [start_node(stack, work, name, **settings) for name in ('a', 'b')]
        port = free_port()
        access_log = work / 'access.log'
        site = site_config(
            s3env.s3_config(prefix),
            listen=f'127.0.0.1:{port}',
            upstreams=[f'127.0.0.1:{node.port}' for node in nodes],
            access_log=str(access_log),
            name='scaleout',
        )
        nginx = start_nginx(work, site, port)
        stack.callback(nginx.stop)
        yield Cluster(prefix, work, settings, nodes, nginx, access_log)


def upload(url: str, data: bytes) -> str:
    resp = requests.post(url + '/', data=data, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    digest = resp.text.strip()
    assert digest == hashlib.sha256(data).hexdigest()
    return digest


def stored_keys(cluster: Cluster) -> list[str]:
    """Keys under the prefix other than the store's metadata document."""
    meta = f'{cluster.prefix}/{META_NAME}'
    return [key for key in s3env.list_keys(cluster.prefix) if key != meta]


def test_nginx_spreads_requests_over_both_nodes(cluster: Cluster) -> None:
    for _ in range(6):
        resp = requests.get(cluster.nginx.url + '/healthz', timeout=TIMEOUT)
        assert resp.status_code == 200
    wanted = {f'127.0.0.1:{node.port}' for node in cluster.nodes}
    used: set[str] = set()

    def both_used() -> bool:
        used.update(re.findall(r'upstream=(\S+)', cluster.access_log.read_text()))
        return wanted <= used

    wait_until(both_used, 10, f'nginx did not use both upstreams: {used}')


@pytest.mark.parametrize('size', [1000, 2 * PART + 3], ids=['small', 'multipart'])
def test_upload_through_nginx_reads_from_each_node(cluster: Cluster, size: int) -> None:
    data = os.urandom(size)
    digest = upload(cluster.nginx.url, data)
    for node in cluster.nodes:
        resp = requests.get(f'{node.url}/files/{digest}', timeout=TIMEOUT)
        assert resp.status_code == 200
        assert resp.content == data
        ranged = requests.get(
            f'{node.url}/files/{digest}', headers={'Range': 'bytes=10-19'}, timeout=30
        )
        assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert s3env.list_uploads(cluster.prefix) == []  # no multipart upload left


def test_delete_through_one_node_is_seen_by_the_other(cluster: Cluster) -> None:
    first, second = cluster.nodes
    digest = upload(cluster.nginx.url, os.urandom(2048))
    assert requests.head(f'{second.url}/files/{digest}', timeout=TIMEOUT).ok
    resp = requests.delete(f'{first.url}/files/{digest}', timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert requests.get(f'{second.url}/files/{digest}', timeout=30).status_code == 404
    assert requests.head(f'{second.url}/files/{digest}', timeout=30).status_code == 404
    resp = requests.delete(f'{second.url}/files/{digest}', timeout=TIMEOUT)
    assert resp.status_code == 404
    via_nginx = requests.get(f'{cluster.nginx.url}/files/{digest}', timeout=30)
    assert via_nginx.status_code == 404


def test_same_content_on_both_nodes_at_once_is_stored_once(cluster: Cluster) -> None:
    data = os.urandom(PART + 1)  # multipart: a temporary key per node
    before = set(stored_keys(cluster))
    barrier = threading.Barrier(len(cluster.nodes))
    results: dict[int, str] = {}

    def send(index: int, node: Server) -> None:
        barrier.wait(TIMEOUT)
        results[index] = upload(node.url, data)

    threads = [
        threading.Thread(target=send, args=(i, node))
        for i, node in enumerate(cluster.nodes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * TIMEOUT)
    assert len(results) == 2 and len(set(results.values())) == 1
    new = set(stored_keys(cluster)) - before
    assert new == {f'{cluster.prefix}/{results[0][:2]}/{results[0]}'}
    assert s3env.list_uploads(cluster.prefix) == []


def test_presigned_redirect_mode(cluster: Cluster) -> None:
    data = os.urandom(4096)
    digest = upload(cluster.nginx.url, data)
    with contextlib.ExitStack() as stack:
        node = start_node(
            stack, cluster.work, 'redirect', **cluster.settings, s3_redirect=1
        )
        resp = requests.get(
            f'{node.url}/files/{digest}', allow_redirects=False, timeout=TIMEOUT
        )
        assert resp.status_code == 307
        location = resp.headers['Location']
        assert location.startswith(os.environ['S3_ENDPOINT_URL'])
        direct = requests.get(location, timeout=TIMEOUT)
        assert direct.status_code == 200 and direct.content == data
        followed = requests.get(f'{node.url}/files/{digest}', timeout=TIMEOUT)
        assert followed.content == data  # what a client following redirects sees
        missing = requests.get(
            f'{node.url}/files/{"0" * 64}', allow_redirects=False, timeout=TIMEOUT
        )
        assert missing.status_code == 404  # checked before redirecting
