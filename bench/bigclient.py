"""Large transfers (100 MiB, 1 GiB) for which wrk cannot count what was sent.

wrk counts only completed requests and the bytes it *read*, so large uploads
would mostly be cut off at the end of a run. Here each upload is a complete
request whose body leaves from the page cache with ``os.sendfile`` (no copy
through Python): a distinct first line, then the rest of one shared source
file. A few threads cost nothing next to the server's hashing and writing.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MiB = 1 << 20


class TransferFailed(RuntimeError):
    """The server refused or cut a transfer."""


def make_source(path: Path, size: int) -> Path:
    """A ``size``-byte file to send from (kept if it already has that size)."""
    if not path.exists() or path.stat().st_size != size:
        block = os.urandom(MiB)
        with open(path, 'wb') as out:
            left = size
            while left > 0:
                left -= out.write(block[: min(left, MiB)])
    return path


def upload(
    port: int,
    path: str,
    source: Path,
    head: bytes,
    method: str = 'POST',
    timeout: float = 300.0,
) -> str:
    """Send ``head`` + ``source[len(head):]`` as one request; the answer's text."""
    size = source.stat().st_size
    with (
        socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock,
        open(source, 'rb') as src,
    ):
        request = (
            f'{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            f'Content-Type: application/octet-stream\r\n'
            f'Content-Length: {size}\r\nConnection: close\r\n\r\n'
        ).encode()
        sock.sendall(request + head)
        # socket.sendfile: os.sendfile, waiting for the socket within the timeout.
        sent = sock.sendfile(src, offset=len(head), count=size - len(head))
        if sent != size - len(head):
            raise TransferFailed(f'the server took {sent} of {size} bytes')
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read().decode(errors='replace')
        if resp.status != 200:
            raise TransferFailed(f'{method} {path}: {resp.status} {body[:200]}')
        return body.strip()


def download(port: int, path: str, timeout: float = 300.0) -> int:
    """GET ``path`` into a reused buffer; the byte count."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.request('GET', path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise TransferFailed(f'GET {path}: {resp.status}')
        buf = bytearray(4 * MiB)
        total = 0
        while n := resp.readinto(buf):
            total += n
        return total
    finally:
        conn.close()


def upload_bytes(port: int, body: bytes, timeout: float = 60.0) -> str:
    """POST a small ``body`` to ``/``; the hash the server answered."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.request('POST', '/', body, {'Content-Type': 'application/octet-stream'})
        resp = conn.getresponse()
        text = resp.read().decode(errors='replace')
        if resp.status != 200:
            raise TransferFailed(f'POST /: {resp.status} {text[:200]}')
        return text.strip()
    finally:
        conn.close()


def timed_download(port: int, path: str) -> tuple[float, int]:
    """:func:`download` timed: MB/s (10**6 bytes) and the byte count."""
    started = time.perf_counter()
    got = download(port, path)
    return got / (time.perf_counter() - started) / 1e6, got


def upload_many(
    port: int, path: str, source: Path, conns: int, count: int, tag: str
) -> tuple[float, list[str]]:
    """``count`` distinct uploads over ``conns`` parallel connections.

    Returns the rate in MB/s and the hashes the server answered.
    """
    size = source.stat().st_size
    started = time.perf_counter()
    with ThreadPoolExecutor(conns) as pool:
        futures = [
            pool.submit(upload, port, path, source, f'{tag}-{i}\n'.encode())
            for i in range(count)
        ]
        hashes = [future.result(timeout=600) for future in futures]
    return count * size / (time.perf_counter() - started) / 1e6, hashes
