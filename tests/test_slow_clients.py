"""Slow and hostile clients against real gunicorn (wsgi_store/ops/workers.py).

Issue 11 items 6 and 7, and issue 13's ``Expect: 100-continue`` bullet: slow
heads and bodies must not stop the service, a silent body is cut after its idle
deadline without leaving a temp file, HTTP/1.1 without Host is a 400, and an
oversized ``Expect: 100-continue`` upload gets its 413 before any body.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, start_gunicorn, wait_until
from wsgi_store.config import Config, ConfigError
from wsgi_store.ops.nginx import site_config
from wsgi_store.ops.requesthead import MAIN, UPLOAD, hopeless, plan

SLOW_HEADERS = 300
SLOW_BODIES = 64
CLOSING_HEALTHZ = b'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'


@pytest.fixture(scope='module')
def nofile() -> None:
    """Enough file descriptors for a few hundred sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def gunicorn(tmp_path: Path, **settings: object) -> Iterator[Server]:
    server = start_gunicorn(tmp_path, tmp_path / 'store', **settings)
    try:
        yield server
    finally:
        server.stop()


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(('127.0.0.1', server.port), timeout=timeout)


def read_response(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``limit`` seconds)."""
    sock.settimeout(limit)
    data = b''
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def upload_head(length: int, extra: str = '') -> bytes:
    return (
        f'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n'
    ).encode()


def timed(server: Server, method: str, path: str, body: bytes | None = None):
    """One request on a fresh connection: (status, body, seconds)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - start
    finally:
        conn.close()


def temp_files(store: Path) -> list[Path]:
    tmp = store / 'tmp'
    return [p for p in tmp.rglob('*') if p.is_file()] if tmp.exists() else []


def test_service_answers_within_2s_while_300_slow_heads_and_64_slow_bodies_are_open(
    tmp_path: Path, nofile: None
) -> None:
    with gunicorn(tmp_path) as server, contextlib.ExitStack() as stack:
        for _ in range(SLOW_HEADERS):
            sock = stack.enter_context(connect(server))
            sock.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n')
        for _ in range(SLOW_BODIES):
            sock = stack.enter_context(connect(server))
            sock.sendall(upload_head(1024 * 1024) + b'x' * 1024)
        time.sleep(1.0)  # let the workers take every one of them in
        status, body, took = timed(server, 'GET', '/healthz')
        assert (status, took < 2.0) == (200, True), (body, took)
        data = b'one KiB upload ' * 68 + b'1234'
        assert len(data) == 1024
        status, body, took = timed(server, 'POST', '/', data)
        assert status in (200, 201) and took < 2.0, (status, body, took)
        assert hashlib.sha256(data).hexdigest() in body.decode()


def test_silent_body_is_cut_after_the_idle_deadline_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    with gunicorn(tmp_path, body_idle_timeout=2) as server:
        with connect(server) as sock:
            sock.sendall(upload_head(1024 * 1024) + b'y' * 200_000)
            wait_until(lambda: temp_files(tmp_path / 'store'), 10, 'the upload began')
            start = time.monotonic()
            sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(65536):
                    pass
            took = time.monotonic() - start
        assert 1.0 < took < 6.0, took
        wait_until(lambda: not temp_files(tmp_path / 'store'), 10, 'temp file removed')
        assert timed(server, 'GET', '/healthz')[0] == 200


def test_body_trickling_below_the_minimum_rate_is_cut_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    settings = {'body_idle_timeout': 2, 'body_min_rate_bytes': 1000}
    with gunicorn(tmp_path, **settings) as server:
        with connect(server) as sock:
            sock.sendall(upload_head(1024 * 1024) + b't' * 10)
            wait_until(lambda: temp_files(tmp_path / 'store'), 10, 'upload began')
            start, cut = time.monotonic(), False
            while not cut and time.monotonic() - start < 10:
                time.sleep(0.5)  # 20 bytes a second: never silent, far too slow
                try:
                    sock.sendall(b't' * 10)
                except (BrokenPipeError, ConnectionResetError):
                    cut = True
            took = time.monotonic() - start
        assert cut and took < 8.0, took
        wait_until(lambda: not temp_files(tmp_path / 'store'), 10, 'temp file removed')
        assert timed(server, 'GET', '/healthz')[0] == 200


def test_head_not_finished_in_time_gets_408_and_close(tmp_path: Path) -> None:
    with gunicorn(tmp_path, header_timeout=1) as server, connect(server) as sock:
        sock.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n')
        start = time.monotonic()
        answer = read_response(sock)
        took = time.monotonic() - start
    assert answer.startswith(b'HTTP/1.1 408 '), answer
    assert b'application/problem+json' in answer
    assert took < 4.0, took


def test_oversized_unfinished_heads_get_431_at_once_and_hold_no_thread(
    tmp_path: Path, nofile: None
) -> None:
    """32 clients each send 70 KiB of header fields and then stall: each gets a
    431 at once (no thread waits for the rest of its head until the deadline),
    and the service keeps answering."""
    field = b'X-Pad: ' + b'a' * 8000 + b'\r\n'
    head = b'GET /healthz HTTP/1.1\r\nHost: x\r\n' + field * 9  # > 64 KiB
    with gunicorn(tmp_path, header_timeout=30) as server:
        socks = [connect(server) for _ in range(32)]
        try:
            for sock in socks:
                sock.sendall(head)  # and never the blank line
            for sock in socks:
                answer = read_response(sock, limit=5.0)
                assert answer.startswith(b'HTTP/1.1 431 '), answer[:80]
                assert b'application/problem+json' in answer
            status, _, took = timed(server, 'GET', '/healthz')
            assert status == 200 and took < 2.0, (status, took)
        finally:
            for sock in socks:
                sock.close()


def test_http11_request_without_host_is_400(tmp_path: Path) -> None:
    with gunicorn(tmp_path) as server, connect(server) as sock:
        sock.sendall(b'GET /healthz HTTP/1.1\r\n\r\n')
        answer = read_response(sock)
    head, _, body = answer.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 400 '), answer
    assert b'application/problem+json' in head
    assert 'Host' in json.loads(body)['detail']


def test_http10_request_without_host_is_allowed(tmp_path: Path) -> None:
    with gunicorn(tmp_path) as server, connect(server) as sock:
        sock.sendall(b'GET /healthz HTTP/1.0\r\n\r\n')
        answer = read_response(sock)
    assert answer.startswith(b'HTTP/1.0 200 ') or answer.startswith(b'HTTP/1.1 200 ')


def test_expect_100_continue_over_the_limit_gets_413_before_any_body(
    tmp_path: Path,
) -> None:
    with gunicorn(tmp_path, max_upload_bytes=1000) as server, connect(server) as sock:
        sock.sendall(upload_head(5000, 'Expect: 100-continue\r\n'))
        answer = read_response(sock)  # the body is never sent
    assert answer.startswith(b'HTTP/1.1 413 '), answer
    assert b'100 Continue' not in answer
    assert b'Connection: close' in answer


def test_expect_100_continue_under_the_limit_still_continues(tmp_path: Path) -> None:
    data = b'z' * 500
    with gunicorn(tmp_path, max_upload_bytes=1000) as server, connect(server) as sock:
        sock.sendall(upload_head(len(data), 'Expect: 100-continue\r\n'))
        sock.settimeout(10)
        interim = sock.recv(65536)
        assert interim.startswith(b'HTTP/1.1 100 Continue\r\n\r\n'), interim
        sock.sendall(
            data + b'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
        )
        answer = interim + read_response(sock)
    assert hashlib.sha256(data).hexdigest().encode() in answer
    assert answer.count(b'HTTP/1.1 200 ') >= 2, answer  # kept alive for the next


def test_downloads_keep_alive_and_sendfile_with_socket_deadlines(
    tmp_path: Path,
) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    with gunicorn(tmp_path, body_idle_timeout=5) as server:
        conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
        try:
            conn.request('POST', '/', body=data)
            resp = conn.getresponse()
            resp.read()
            first = conn.sock
            conn.request('GET', f'/files/{hashlib.sha256(data).hexdigest()}')
            resp = conn.getresponse()
            assert (resp.status, resp.read() == data) == (200, True)
            assert conn.sock is first  # the same connection served both
        finally:
            conn.close()


def test_garbage_after_a_request_is_refused_at_once_not_after_the_deadline(
    tmp_path: Path,
) -> None:
    with gunicorn(tmp_path) as server, connect(server) as sock:
        sock.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01garbage')
        start = time.monotonic()
        answer = read_response(sock)
        took = time.monotonic() - start
    # gunicorn alone would wait for the end of that line, holding a thread
    assert answer.startswith(b'HTTP/1.1 200 '), answer
    assert b'HTTP/1.1 400 ' in answer and b'application/problem+json' in answer
    assert took < 5.0, took


def test_graceful_stop_waits_for_an_upload_after_a_closed_connection(
    tmp_path: Path,
) -> None:
    """A closed connection is counted once: the worker still waits for the
    upload in flight when it is told to stop."""
    data = b'u' * 300_000
    with gunicorn(tmp_path, workers=1) as server:
        with connect(server) as sock:
            sock.sendall(CLOSING_HEALTHZ)
            assert read_response(sock).startswith(b'HTTP/1.1 200 ')
        with connect(server) as sock:
            sock.sendall(upload_head(len(data)) + data[:100_000])
            wait_until(lambda: temp_files(tmp_path / 'store'), 10, 'upload began')
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            sock.sendall(data[100_000:])
            answer = read_response(sock)
        assert answer.startswith(b'HTTP/1.1 200 '), answer
        assert hashlib.sha256(data).hexdigest().encode() in answer


@pytest.mark.parametrize(
    ('data', 'expected'),
    [
        (b'GET /heal', False),
        (b'GET /healthz HTTP/1.1\r\nHost: x\r\n', False),
        (b'GET / HTTP/1.1\r\nHost: caf\xe9\r\n', False),
        (b'\x16\x03\x01\x02', True),  # a TLS hello on the plain port
        (b'GARBAGE\r\n', True),
        (b'GET /a b HTTP/1.1\r\n', True),
        (b'GET / HTTP/1.1\r\nHo\x00st: x\r\n', True),
        (b'GET /' + b'a' * 9000, True),
    ],
)
def test_hopeless_spots_heads_that_cannot_become_valid(
    data: bytes, expected: bool
) -> None:
    assert hopeless(data, line_limit=8190) is expected


H = b'POST / HTTP/1.1\r\n'
EXPECT = b'Expect: 100-continue\r\n'


@pytest.mark.parametrize(
    ('data', 'pool', 'body'),
    [
        (b'GET / HTTP/1.1\r\nHost: x\r\n', None, 0),
        (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', MAIN, 0),
        (b'\r\nGET / HTTP/1.0\r\n\r\n', MAIN, 0),
        (H + b'Content-Length: 3\r\n\r\n', MAIN, 3),
        (H + b'Content-Length: 99999\r\n\r\n', UPLOAD, 0),
        (H + b'Transfer-Encoding: chunked\r\n\r\n', UPLOAD, 0),
        (H + b'Content-Length: 3\r\n' + EXPECT + b'\r\n', UPLOAD, 0),
        (H + b'Content-Length: 9\r\n' + EXPECT + b'\r\n', MAIN, 0),
        (H + b'Content-Length: x\r\n\r\n', MAIN, 0),
    ],
)
def test_plan_decides_pool_and_bytes_to_gather(
    data: bytes, pool: str | None, body: int
) -> None:
    expected = None if pool is None else (pool, len(data) + body)
    assert plan(data, max_upload=5, body_buffer=1024) == expected


def test_nginx_site_gives_up_on_slow_clients_no_later_than_the_app() -> None:
    config = Config(header_timeout=20, body_idle_timeout=45, timeout=100).resolved()
    text = site_config(config)

    def seconds(directive: str) -> int:
        found = re.findall(rf'^\s*{directive} (\d+)s;', text, re.MULTILINE)
        assert len(found) == 1, (directive, found)
        return int(found[0])

    assert seconds('client_header_timeout') <= 20
    assert seconds('client_body_timeout') <= 45
    assert seconds('send_timeout') <= 45
    assert seconds('proxy_send_timeout') > 100
    assert seconds('proxy_read_timeout') > 100


@pytest.mark.parametrize('name', ['HEADER_TIMEOUT', 'BODY_IDLE_TIMEOUT'])
def test_a_zero_deadline_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=f'WSGI_STORE_{name}'):
        Config.from_env({f'WSGI_STORE_{name}': '0'})
