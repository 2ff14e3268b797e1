"""Issue 15: large bodies without copies (readinto from gunicorn's socket).

A Content-Length body is received into reused buffers straight from the socket
(first what gunicorn already buffered), hashed and written from that memory,
with hashing + writing on a helper thread while the next chunk arrives.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from pathlib import Path

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from wsgi_store.backends import copyinto
from wsgi_store.backends.streaming import copy_stream
from wsgi_store.errors import IncompleteBody
from wsgi_store.http.directbody import direct_reader
from wsgi_store.http.uploads import BodyReader

NEXT_REQUEST = b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'


def _gunicorn_body(sock: socket.socket, buffered: bytes, length: int) -> Body:
    unreader = SocketUnreader(sock)
    unreader.buf.write(buffered)  # what gunicorn read together with the head
    return Body(LengthReader(unreader, length))


def _send_later(sock: socket.socket, data: bytes, close: bool) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_length_body_is_read_from_the_socket_without_gunicorns_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Buffered bytes first, then recv_into; gunicorn's Body.read is never used,
    its accounting ends at 0 and a pipelined next request stays buffered."""
    data = os.urandom(5 * (1 << 20) + 123)
    server, client = socket.socketpair()
    with server, client:
        head_part = data[:1000]
        body = _gunicorn_body(server, head_part, len(data))

        def no_copy(*args: object) -> bytes:
            raise AssertionError('gunicorn Body.read used')

        monkeypatch.setattr(Body, 'read', no_copy)
        reader = BodyReader(body, len(data), 0, direct_reader(body, len(data)))
        sender = _send_later(client, data[1000:] + NEXT_REQUEST, close=False)
        out = io.BytesIO()
        result = copy_stream(
            reader, out.write, ['sha256'], chunk_bytes=1 << 20, length=len(data)
        )
        sender.join(10)
        assert result.hexdigest('sha256') == hashlib.sha256(data).hexdigest()
        assert out.getvalue() == data
        assert body.reader.length == 0 and not body.failed
        # The next request is either still in the socket or in gunicorn's buffer,
        # never eaten by the body.
        server.settimeout(5)
        rest = body.reader.unreader.buf.getvalue()
        while len(rest) < len(NEXT_REQUEST):
            rest += server.recv(4096)
        assert rest == NEXT_REQUEST


def test_a_short_body_is_refused_and_the_connection_is_not_reused() -> None:
    data = os.urandom(300_000)
    server, client = socket.socketpair()
    with server, client:
        body = _gunicorn_body(server, b'', len(data) + 10)
        reader = BodyReader(
            body, len(data) + 10, 0, direct_reader(body, len(data) + 10)
        )
        sender = _send_later(client, data, close=True)
        with pytest.raises(IncompleteBody, match=f'after {len(data)} of'):
            copy_stream(
                reader, lambda v: None, ['sha256'], chunk_bytes=65536, length=None
            )
        sender.join(10)
        assert body.failed  # gunicorn closes the connection instead of reusing it


def test_no_direct_path_for_chunked_or_partly_read_bodies() -> None:
    server, client = socket.socketpair()
    with server, client:
        body = _gunicorn_body(server, b'abcdef', 6)
        assert direct_reader(body, None) is None  # no Content-Length
        assert direct_reader(io.BytesIO(b'abcdef'), 6) is None  # not gunicorn
        body.read(2)
        assert direct_reader(body, 6) is None  # Body holds buffered bytes now


def test_large_bodies_are_hashed_and_written_on_a_helper_thread_in_order() -> None:
    chunks = [bytes([i]) * 65536 for i in range(20)]
    data = b''.join(chunks)
    writers: set[str] = set()
    out = bytearray()

    def write(view: memoryview) -> None:
        writers.add(threading.current_thread().name)
        out.extend(view)

    result = copy_stream(
        io.BytesIO(data), write, ['sha256', 'md5'], chunk_bytes=65536, length=len(data)
    )
    assert bytes(out) == data
    assert result.digests['sha256'] == hashlib.sha256(data).digest()
    assert result.digests['md5'] == hashlib.md5(data).digest()
    assert writers and all(n.startswith('upload-hash') for n in writers)


def test_a_failing_write_stops_the_copy_and_nothing_writes_after_return() -> None:
    calls: list[int] = []

    def write(view: memoryview) -> None:
        calls.append(len(view))
        if len(calls) == 3:
            raise OSError(28, 'No space left on device')

    with pytest.raises(OSError, match='No space'):
        copy_stream(io.BytesIO(b'x' * (1 << 20)), write, ['sha256'], chunk_bytes=65536)
    seen = len(calls)
    copyinto._helpers().submit(lambda: None).result(5)  # let any straggler run
    assert len(calls) == seen <= 4


def test_a_large_upload_on_gunicorn_then_a_request_on_the_same_connection(
    tmp_path: Path,
) -> None:
    """End to end: a 12 MiB Content-Length POST stored with the right hash, and
    the keep-alive connection still serves the next request."""
    import http.client

    from tests.servers import start_gunicorn

    store = tmp_path / 'store'
    server = start_gunicorn(tmp_path, store, workers=1)
    try:
        data = os.urandom(12 * (1 << 20) + 7)
        conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
        conn.request(
            'POST',
            '/files',
            body=data,
            headers={'Content-Type': 'application/octet-stream'},
        )
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status in (200, 201), text
        digest = hashlib.sha256(data).hexdigest()
        assert digest in text
        stored = store / digest[:2] / digest
        assert stored.read_bytes() == data
        conn.request('GET', f'/files/{digest}', headers={'Range': 'bytes=0-9'})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == data[:10]
        conn.close()
    finally:
        server.stop()
