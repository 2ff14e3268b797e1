"""Fault tests on real gunicorn processes: crashes, disconnects, a full disk,
races and hostile input. Every wait has a deadline; every process is ours.

Temp uploads are named ``<worker pid>.<random>.part`` in ``STORE/tmp``: a test
finds the worker that holds an upload from its temp file, and tells uploads
apart by the size their temp file settles at (``chunk_bytes`` is 64 KiB, so a
worker writes exactly what it was sent once it has a whole number of chunks).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from tests.servers import (
    IN_CI,
    Server,
    start_gunicorn,
)
from wsgi_store.config import Config
from wsgi_store.maintenance import tasks as maintenance

pytestmark = pytest.mark.e2e
KiB, MiB = 1024, 1024 * 1024
CHUNK = 64 * KiB
T = TypeVar('T')


# -- helpers ---------------------------------------------------------------------
def wait_for(probe: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def temp_sizes(store: Path) -> dict[Path, int]:
    """Every temp upload and its current size."""
    found = {}
    for path in (store / 'tmp').glob('*.part'):
        with contextlib.suppress(FileNotFoundError):
            found[path] = path.stat().st_size
    return found


def owner(temp: Path) -> int:
    return int(temp.name.split('.')[0])


def objects(store: Path) -> set[str]:
    return {p.name for p in store.glob('[0-9a-f][0-9a-f]/*')}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_store(store: Path) -> int:
    return maintenance.verify(Config(store_dir=store), progress=False)


def pattern_hash(block: bytes, total: int) -> str:
    hasher = hashlib.sha256()
    for _ in range(total // len(block)):
        hasher.update(block)
    return hasher.hexdigest()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    return status, headers


def read_response(
    sock: socket.socket, buf: bytes = b'', timeout: float = 20
) -> Response | None:
    """Read one response (Content-Length or until EOF); None if the peer closed
    or reset the connection before a status line arrived."""
    deadline = time.monotonic() + timeout
    sock.setblocking(True)
    while b'\r\n\r\n' not in buf:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return None
        if not data:
            return None
        buf += data
    head, _, body = buf.partition(b'\r\n\r\n')
    status, headers = parse_head(head)
    length = int(headers.get('content-length', -1))
    while length < 0 or len(body) < length:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            break
        if not data:
            break
        body += data
    return Response(status, headers, body[:length] if length >= 0 else body)


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f'{method} {target} HTTP/1.1', 'Host: 127.0.0.1']
    lines += [f'{k}: {v}' for k, v in headers.items()]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')


def exchange(port: int, raw: bytes, timeout: float = 20) -> Response | None:
    """Send raw bytes on a fresh connection and read the answer."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock, timeout=timeout)


def send_while_reading(
    sock: socket.socket, pieces: Iterable[bytes], timeout: float = 60
) -> tuple[Response | None, int]:
    """Send ``pieces`` but stop as soon as a response starts (STYLE trap 10).

    Returns the response (None when the connection died without one) and how
    many bytes were sent.
    """
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    source, pending, sent, got = iter(pieces), b'', 0, b''
    try:
        while time.monotonic() < deadline:
            for _key, events in selector.select(timeout=0.5):
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except (ConnectionResetError, BrokenPipeError):
                        return None, sent
                    if not data:
                        return (read_response(sock, got) if got else None), sent
                    got += data
                    if b'\r\n\r\n' in got:
                        return read_response(sock, got), sent
                if events & selectors.EVENT_WRITE:
                    if not pending:
                        pending = next(source, b'')
                        if not pending:
                            selector.modify(sock, selectors.EVENT_READ)
                            continue
                    try:
                        n = sock.send(pending)
                    except (ConnectionResetError, BrokenPipeError):
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                    pending, sent = pending[n:], sent + n
    finally:
        selector.close()
    pytest.fail(f'no response within {timeout} s after sending {sent} bytes')


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b'%x\r\n%s\r\n' % (len(piece), piece)
    yield b'0\r\n\r\n'


def repeat(block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield block


def rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset, like a crashed client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


@dataclass
class RawUpload:
    """A POST on its own connection whose body we send piece by piece."""

    port: int
    tag: str
    length: int
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(('127.0.0.1', self.port), timeout=30)
        self.sock.sendall(
            request_head(
                'POST',
                f'/files?probe={self.tag}',
                {'Content-Length': str(self.length), 'Connection': 'close'},
            )
        )

    def send(self, data: bytes) -> bool:
        """Send; False when the server side is gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def response(self) -> Response | None:
        try:
            return read_response(self.sock, timeout=30)
        finally:
            self.sock.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test; all stopped at its end, whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


# -- 1. kill -9 of a worker in the middle of a 256 MiB upload ------------------------
def test_kill_9_worker_mid_upload(tmp_path, servers) -> None:
    store = tmp_path / 'store'
    server = start_gunicorn(
        tmp_path, store, workers=2, threads=32, chunk_bytes=CHUNK, timeout=300
    )
    servers.append(server)
    block = os.urandom(MiB)
    big = RawUpload(server.port, 'big', 256 * MiB)
    for _ in range(128):  # half of it, then the worker dies
        assert big.send(block)
    big_temp = wait_for(
        lambda: [p for p, n in temp_sizes(store).items() if n >= 64 * MiB],
        120,
        "the 256 MiB upload's temp file",
    )[0]
    victim = owner(big_temp)
    assert victim in server.worker_pids()

    # Open uploads one by one until one sits on the other worker.
    probes: list[tuple[RawUpload, bytes, int]] = []
    for i in range(24):
        size = (i + 1) * CHUNK
        body = os.urandom(size + 1000)
        probe = RawUpload(server.port, f'p{i}', len(body))
        assert probe.send(body[:size])
        temp = wait_for(
            lambda size=size: [p for p, n in temp_sizes(store).items() if n == size],
            30,
            f'probe {i} to reach its worker',
        )[0]
        probes.append((probe, body, owner(temp)))
        if any(pid != victim for _, _, pid in probes):
            break
    survivors = [(p, b) for p, b, pid in probes if pid != victim]
    assert survivors, 'every connection landed on the victim worker'

    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
        60,
        'gunicorn to replace the killed worker',
    )
    assert big_temp.exists()  # a new worker must not sweep a sibling's temp files
    big.send(block)
    resp = big.response()
    assert resp is None or resp.status != 200

    for probe, body in survivors:  # in flight on the other worker: they complete
        assert probe.send(body[-1000:])
        resp = probe.response()
        assert resp is not None and resp.status == 200
        assert resp.body == f'{sha256(body)}\n'.encode()
    for probe, _, pid in probes:
        if pid == victim:
            assert probe.response() is None
    assert objects(store) == {sha256(body) for _, body in survivors}
    assert pattern_hash(block, 256 * MiB) not in objects(store)

    server.stop()
    assert big_temp.exists()
    again = start_gunicorn(tmp_path, store, workers=1)  # on_starting sweeps
    servers.append(again)
    assert temp_sizes(store) == {}
    assert verify_store(store) == 0


# -- 2. the client goes away mid-upload ----------------------------------------------
@pytest.mark.parametrize('framing', ['length', 'chunked'])
@pytest.mark.parametrize('close', ['fin', 'rst'])
def test_client_disconnect_mid_upload(tmp_path, servers, framing, close) -> None:
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=1, chunk_bytes=CHUNK)
    servers.append(server)
    [worker] = server.worker_pids()
    tag = f'gone-{framing}-{close}'
    headers = {'Content-Length': str(8 * MiB)}
    if framing == 'chunked':
        headers = {'Transfer-Encoding': 'chunked'}
    sock = socket.create_connection(('127.0.0.1', server.port), timeout=30)
    sock.sendall(request_head('POST', f'/files?probe={tag}', headers))
    data = os.urandom(4 * CHUNK)
    sock.sendall(next(chunked([data])) if framing == 'chunked' else data)
    temp = wait_for(
        lambda: [p for p, n in temp_sizes(store).items() if n >= 3 * CHUNK],
        30,
        'the upload to reach the worker',
    )[0]
    assert owner(temp) == worker
    if close == 'rst':
        rst_close(sock)
    else:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    wait_for(lambda: not temp_sizes(store), 30, 'the temp file to be removed')
    assert objects(store) == set()
    assert server.worker_pids() == [worker]  # alive, not replaced
    ok = requests.post(server.url + '/files', b'next', timeout=30)
    assert ok.status_code == 200 and ok.text == sha256(b'next') + '\n'
    assert server.worker_pids() == [worker]  # the same worker served it
    server.stop()
    log = server.log.read_text()
    assert '"POST /files HTTP/1.1" 200' in log  # the access log was written out
    assert not re.search(rf'probe={tag} HTTP/1.1" 200', log)


# -- 3. disk full ------------------------------------------------------------------
@dataclass
class SmallDisk:
    """Where the store goes: an 8 MiB tmpfs, or a per-file size limit."""

    root: Path
    mode: str  # 'tmpfs' or 'rlimit'
    limit: int = 8 * MiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / 'small'
    mnt.mkdir()
    try:
        done = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', str(mnt)],
            capture_output=True,
            timeout=30,
        )
        mounted = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    if not mounted:
        yield SmallDisk(mnt, 'rlimit')
        return
    try:
        yield SmallDisk(mnt, 'tmpfs')
    finally:
        result = subprocess.run(['umount', str(mnt)], capture_output=True, timeout=30)
        if result.returncode != 0:  # still busy: detach it now, freed when idle
            subprocess.run(['umount', '-l', str(mnt)], capture_output=True, timeout=30)


def start_limited(workdir: Path, store: Path, fsize: int, **settings) -> Server:
    """gunicorn with RLIMIT_FSIZE (writes past it fail with EFBIG, not SIGXFSZ)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return start_gunicorn(workdir, store, preexec_fn=limit, **settings)


def upload_until_answer(port: int, body_pieces: Iterable[bytes], length: int | None):
    headers = {'Connection': 'close'}
    if length is None:
        headers['Transfer-Encoding'] = 'chunked'
        body_pieces = chunked(body_pieces)
    else:
        headers['Content-Length'] = str(length)
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        sock.sendall(request_head('POST', '/files', headers))
        return send_while_reading(sock, body_pieces)[0]


def fill(path: Path, limit: int) -> None:
    """Write ``path`` until the filesystem is full (bounded by ``limit``)."""
    block = b'\0' * (64 * KiB)
    with open(path, 'wb') as f:
        for _ in range(limit // len(block) + 2):
            try:
                f.write(block)
                f.flush()
            except OSError:
                return
    pytest.fail(f'{path} never filled its filesystem')


@pytest.mark.parametrize('framing', ['length', 'chunked'])
def test_disk_full_is_507_and_recovers(tmp_path, servers, small_disk, framing):
    store = small_disk.root / 'store'
    settings = {'workers': 1, 'chunk_bytes': CHUNK, 'readyz_min_free_bytes': MiB}
    if small_disk.mode == 'tmpfs':
        server = start_gunicorn(tmp_path, store, **settings)
    elif IN_CI or os.environ.get('WSGI_STORE_TEST_RLIMIT', '1') == '1':
        server = start_limited(tmp_path, store, small_disk.limit, **settings)
    else:
        pytest.skip('cannot mount a tmpfs nor limit file sizes here')
    servers.append(server)
    kept = os.urandom(4 * KiB)
    assert requests.post(server.url + '/files', kept, timeout=30).status_code == 200

    big = repeat(os.urandom(MiB), 16)  # twice the space there is
    resp = upload_until_answer(
        server.port, big, 16 * MiB if framing == 'length' else None
    )
    assert resp is not None and resp.status == 507
    assert resp.headers['content-type'] == 'application/problem+json'
    wait_for(lambda: not temp_sizes(store), 30, 'the temp file to be removed')
    assert objects(store) == {sha256(kept)}
    got = requests.get(f'{server.url}/files/{sha256(kept)}', timeout=30)
    assert got.status_code == 200 and got.content == kept  # reads still served

    if small_disk.mode != 'tmpfs':
        return  # a per-file limit has no "space frees" phase
    filler = small_disk.root / 'filler'
    fill(filler, small_disk.limit)
    small = os.urandom(256 * KiB)
    resp = upload_until_answer(server.port, [small], len(small))
    assert resp is not None and resp.status == 507
    ready = requests.get(server.url + '/readyz', timeout=30)
    assert ready.status_code == 503 and 'free_bytes' in ready.json()['failed']
    assert requests.get(f'{server.url}/files/{sha256(kept)}', timeout=30).ok
    wait_for(lambda: not temp_sizes(store), 30, 'the temp file to be removed')

    filler.unlink()  # space frees: uploads work again
    ok = requests.post(server.url + '/files', small, timeout=30)
    assert ok.status_code == 200 and ok.text == sha256(small) + '\n'
    assert requests.get(server.url + '/readyz', timeout=30).status_code == 200
    assert verify_store(store) == 0


# -- 4. same content from 16 clients while another deletes it -----------------------
def test_same_content_uploads_race_deletes(tmp_path, servers) -> None:
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=2, threads=16)
    servers.append(server)
    data = os.urandom(256 * KiB)
    name = sha256(data)
    done = threading.Event()
    statuses: list[int] = []

    def upload(_: int) -> None:
        with requests.Session() as session:
            for _ in range(12):
                resp = session.post(server.url + '/files', data, timeout=60)
                statuses.append(resp.status_code)
                assert resp.status_code != 200 or resp.text == name + '\n'

    def delete_loop() -> int:
        deletes = 0
        with requests.Session() as session:
            for _ in range(2000):
                if done.is_set():
                    break
                resp = session.delete(f'{server.url}/files/{name}', timeout=60)
                statuses.append(resp.status_code)
                deletes += resp.status_code == 200
        return deletes

    with ThreadPoolExecutor(17) as pool:
        deleter = pool.submit(delete_loop)
        uploads = [pool.submit(upload, i) for i in range(16)]
        for future in uploads:
            future.result(timeout=300)
        done.set()
        assert deleter.result(timeout=60) > 0  # the race really happened
    assert set(statuses) <= {200, 404}, sorted(set(statuses))
    assert statuses.count(200) >= 16 * 12
    assert temp_sizes(store) == {}
    assert verify_store(store) == 0
    if name in objects(store):
        got = requests.get(f'{server.url}/files/{name}', timeout=30)
        assert got.content == data


# -- 5. a download in progress while the object is deleted ---------------------------
@pytest.mark.parametrize('verify_reads', [False, True])
def test_download_survives_delete(tmp_path, servers, verify_reads) -> None:
    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=1, verify_reads=verify_reads)
    servers.append(server)
    block = os.urandom(MiB)
    data = block * 64
    name = sha256(data)
    assert requests.post(server.url + '/files', data, timeout=60).text == name + '\n'
    with requests.get(f'{server.url}/files/{name}', stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        parts = resp.iter_content(256 * KiB)
        first = next(parts)
        gone = requests.delete(f'{server.url}/files/{name}', timeout=30)
        assert gone.status_code == 200
        assert requests.get(f'{server.url}/files/{name}', timeout=30).status_code == 404
        received = len(first)
        hasher = hashlib.sha256(first)
        for part in parts:  # the rest arrives after the delete
            hasher.update(part)
            received += len(part)
    assert received == len(data) and hasher.hexdigest() == name
    assert objects(store) == set()


# -- 6. hostile input over raw sockets ----------------------------------------------
CANARY = b'canary: must never be served or changed\n'


@pytest.fixture(scope='module')
def hostile(tmp_path_factory) -> Iterator[tuple[Server, Path, Path]]:
    work = tmp_path_factory.mktemp('hostile')
    store = work / 'store'
    canary = work / 'canary'
    canary.write_bytes(CANARY)
    (work / 'store.canary').write_bytes(CANARY)
    server = start_gunicorn(
        work, store, workers=1, max_upload_bytes=MiB, chunk_bytes=CHUNK
    )
    try:
        yield server, store, canary
    finally:
        server.stop()
    assert canary.read_bytes() == CANARY


def outside_state(work: Path) -> dict[str, tuple[int, int]]:
    """Everything next to the store (not in it, not the logs): name -> size, mtime."""
    found = {}
    for path in work.iterdir():
        if path.name == 'store' or path.name.startswith('gunicorn-'):
            continue
        st = path.stat()
        found[path.name] = (st.st_size, st.st_mtime_ns)
    return found


def assert_not_leaked(resp: Response | None) -> None:
    if resp is not None:
        # (gunicorn echoes a bad request line, so look for contents, not names)
        assert b'must never be served' not in resp.body
        assert b'root:x:0:0' not in resp.body


TRAVERSALS = [
    '../canary',
    '..%2fcanary',
    '%2e%2e%2fcanary',
    '%2e%2e/%2e%2e/canary',
    '%252e%252e%252fcanary',
    '..%5ccanary',
    '..\\canary',
    '%c0%ae%c0%ae%2fcanary',
    '%c0%ae%c0%ae/canary',
    '%e0%80%ae%e0%80%ae%2fcanary',
    '..%00',
    '%00',
    'a' * 63 + '%00',
    '..%2f..%2f..%2f..%2fetc%2fpasswd',
    '/etc/passwd',
    '%2fetc%2fpasswd',
    'store.canary',
    '....%2f%2fcanary',
    '.%2e/canary',
]


@pytest.mark.parametrize('value', TRAVERSALS)
@pytest.mark.parametrize('method', ['GET', 'HEAD', 'DELETE', 'POST', 'PUT'])
def test_traversal_in_every_encoding(hostile, value, method) -> None:
    server, store, canary = hostile
    before = outside_state(canary.parent)
    stored = objects(store)
    body = b'' if method in ('GET', 'HEAD', 'DELETE') else CANARY
    targets = [f'/?file_hash={value}', f'/files/{value}', f'/{value}']
    expected = set(stored)
    for target in targets:
        raw = request_head(
            method, target, {'Content-Length': str(len(body)), 'Connection': 'close'}
        )
        resp = exchange(server.port, raw + body)
        assert resp is not None, target
        if method == 'PUT' and value == 'store.canary' and '?' not in target:
            # `curl -T store.canary URL/`: a named upload (issue 13). It stores
            # the body *inside* the store, as an object; nothing outside moves.
            assert resp.status == 200, (target, resp.status)
            expected.add(sha256(CANARY))
        else:
            assert resp.status in (400, 404, 405), (target, resp.status)
        assert_not_leaked(resp)
    assert outside_state(canary.parent) == before
    assert canary.read_bytes() == CANARY
    assert objects(store) == expected
    assert temp_sizes(store) == {}


def test_nul_and_control_bytes_in_request_line(hostile) -> None:
    server, store, _ = hostile
    for target in (b'/files/\x00', b'/?file_hash=\x00', b'/files/..\x00/canary'):
        resp = exchange(server.port, b'GET ' + target + b' HTTP/1.1\r\nHost: x\r\n\r\n')
        assert resp is None or resp.status == 400
        assert_not_leaked(resp)
    assert temp_sizes(store) == {}


@pytest.mark.parametrize(
    ('raw', 'allowed'),
    [
        (f'GET /?file_hash={"a" * 10_000} HTTP/1.1\r\nHost: x\r\n\r\n', {400, 414}),
        (f'GET /files/{"a" * 9000} HTTP/1.1\r\nHost: x\r\n\r\n', {400, 414}),
        (
            'GET / HTTP/1.1\r\nHost: x\r\n'
            + ''.join(f'X-H{i}: v\r\n' for i in range(150))
            + '\r\n',
            {400, 431},
        ),
        (f'GET / HTTP/1.1\r\nHost: x\r\nX-Big: {"b" * 9000}\r\n\r\n', {400, 431}),
        (
            'POST /files HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n'
            'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
            {400},
        ),
        ('POST /files HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n', {400}),
        ('POST /files HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n', {400}),
        ('GARBAGE\r\n\r\n', {400}),
    ],
)
def test_overlong_and_malformed_requests(hostile, raw, allowed) -> None:
    server, store, _ = hostile
    stored = objects(store)
    resp = exchange(server.port, raw.encode('latin-1'))
    assert resp is not None and resp.status in allowed
    assert objects(store) == stored
    # The worker survived: the next request is answered.
    assert requests.get(server.url + '/healthz', timeout=10).status_code == 200


@pytest.mark.parametrize(
    'query',
    [
        'file_hash',
        '&&&',
        '=',
        'file_hash=%zz',
        '%ff%fe=1',
        'file_hash=%00',
        'file_hash=a&file_hash=b',
        'file_hash[]=x',
        'file_hash=' + '%' * 100,
        ';;;=%%%',
    ],
)
def test_malformed_query_strings(hostile, query) -> None:
    server, _, _ = hostile
    resp = exchange(server.port, request_head('GET', f'/?{query}', {}))
    assert resp is not None and resp.status == 400
    assert resp.headers['content-type'] == 'application/problem+json'


def multipart_upload(port: int, pieces: Iterable[bytes]) -> Response | None:
    headers = {
        'Content-Type': 'multipart/form-data; boundary=XX',
        'Transfer-Encoding': 'chunked',
        'Connection': 'close',
    }
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        sock.sendall(request_head('POST', '/', headers))
        return send_while_reading(sock, chunked(pieces))[0]


def test_multipart_with_1000_parts_is_400(hostile) -> None:
    server, store, _ = hostile
    parts = [
        b'--XX\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
        for i in range(1000)
    ]
    resp = multipart_upload(server.port, [*parts, b'--XX--\r\n'])
    assert resp is not None and resp.status == 400
    assert b'maximum number of form body parts' in resp.body
    assert temp_sizes(store) == {}


def test_multipart_with_1_mib_part_header_is_400(hostile) -> None:
    server, store, _ = hostile
    stored = objects(store)
    head = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
    pad = [b'X-Pad: ' + b'a' * (64 * KiB)] * 16  # 1 MiB of one header line
    resp = multipart_upload(server.port, [head, *pad, b'\r\n\r\nabc\r\n--XX--\r\n'])
    assert resp is not None and resp.status == 400
    assert objects(store) == stored
    wait_for(lambda: not temp_sizes(store), 10, 'no temp file')


def test_content_length_longer_than_body(hostile) -> None:
    """Fewer bytes than announced, then the client closes its side: no object."""
    server, store, _ = hostile
    stored = objects(store)
    body = os.urandom(10_000)
    with socket.create_connection(('127.0.0.1', server.port), timeout=30) as sock:
        sock.sendall(
            request_head('POST', '/files', {'Content-Length': str(len(body) + 5000)})
        )
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
        resp = read_response(sock)
    assert resp is None or resp.status == 400
    wait_for(lambda: not temp_sizes(store), 10, 'the temp file to be removed')
    assert objects(store) == stored
    assert sha256(body) not in objects(store)


def test_content_length_shorter_than_body(hostile) -> None:
    """Only the announced bytes are the object; the rest is the next request."""
    server, store, _ = hostile
    body = os.urandom(10_000)
    announced = body[:4000]
    raw = request_head('POST', '/files', {'Content-Length': str(len(announced))})
    with socket.create_connection(('127.0.0.1', server.port), timeout=30) as sock:
        sock.sendall(raw + body)
        resp = read_response(sock)
        assert resp is not None and resp.status == 200
        assert resp.body == f'{sha256(announced)}\n'.encode()
        rest = read_response(sock, timeout=10)  # the trailing bytes: not HTTP
        assert rest is None or rest.status == 400
    assert sha256(announced) in objects(store)
    assert sha256(body) not in objects(store)
    path = store / sha256(announced)[:2] / sha256(announced)
    assert path.read_bytes() == announced


def test_never_ending_chunked_body_is_413(hostile) -> None:
    server, store, _ = hostile
    stored = objects(store)
    headers = {'Transfer-Encoding': 'chunked', 'Connection': 'close'}
    endless = repeat(os.urandom(64 * KiB), 64 * 16)  # 64 MiB bound, limit 1 MiB
    with socket.create_connection(('127.0.0.1', server.port), timeout=30) as sock:
        sock.sendall(request_head('POST', '/files', headers))
        resp, sent = send_while_reading(
            sock, (b'%x\r\n%s\r\n' % (len(p), p) for p in endless)
        )
    assert resp is not None and resp.status == 413
    assert sent < 64 * MiB  # answered long before the client stopped
    wait_for(lambda: not temp_sizes(store), 10, 'the temp file to be removed')
    assert objects(store) == stored


def test_store_is_intact_after_hostile_input(hostile) -> None:
    _, store, canary = hostile
    assert verify_store(store) == 0
    assert canary.read_bytes() == CANARY
