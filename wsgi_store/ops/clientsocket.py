"""Client sockets with deadlines, and the few answers the worker gives itself.

Used by :mod:`wsgi_store.ops.workers`; see there for the design.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import time
from typing import Any

from wsgi_store.http.problems import PROBLEM_JSON, problem

logger = logging.getLogger(__name__)


class DeadlineSocket(socket.socket):
    """A client socket whose blocking mode always carries ``io_timeout``.

    gthread switches sockets to blocking mode (``setblocking(True)``) before
    parsing, reading bodies and sending responses; here that mode waits at most
    ``io_timeout`` seconds per operation. A read that times out shuts the
    connection and reads as end-of-stream, which gunicorn and the app already
    handle (a short body is refused and its temp file removed); a write that
    times out raises ``EPIPE``, which gunicorn treats as a client gone.
    ``socket.sendfile`` keeps working: with a timeout it waits for the socket to
    be writable before each ``os.sendfile``.

    ``min_rate`` (bytes per second, 0 = off) is a floor for a request's reads:
    once a request has been read for longer than ``io_timeout``, a client whose
    average is below it is cut the same way, so a trickle cannot hold a thread
    for ever either. :meth:`start_request` starts the count.
    """

    io_timeout: float | None = None
    min_rate: int = 0
    _since: float | None = None
    _got: int = 0

    def start_request(self) -> None:
        """Count the reads of a new request from now."""
        self._since, self._got = time.monotonic(), 0

    def setblocking(self, flag: bool) -> None:
        if self.fileno() < 0:
            # Closed by StoreWorker.handle already: gthread's finish_request
            # closes it again, and must not count an error for it.
            return
        want = (self.io_timeout or None) if flag else 0.0
        # NOTE: gthread and the poller switch modes several times a request,
        # mostly to the mode the socket is in already. Each switch is an
        # ioctl that releases the GIL (a thread hand-off under load): skip
        # the ones that would change nothing. settimeout(0.0) and
        # settimeout(None) are setblocking(False) and setblocking(True).
        if self.gettimeout() != want:
            self.settimeout(want)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:
            data = super().recv(bufsize, flags)
        except TimeoutError:
            if self.io_timeout is None:
                raise
            self._cut(f'sent nothing for {self.io_timeout} s')
            return b''
        return data if self._fast_enough(len(data)) else b''

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        # The app's direct body reader (directbody.py) reads this way.
        try:
            got = super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            if self.io_timeout is None:
                raise
            self._cut(f'sent nothing for {self.io_timeout} s')
            return 0
        return got if self._fast_enough(got) else 0

    def _fast_enough(self, got: int) -> bool:
        if not (self.min_rate and self._since is not None and self.io_timeout):
            return True
        self._got += got
        elapsed = time.monotonic() - self._since
        if elapsed > self.io_timeout and self._got < self.min_rate * elapsed:
            self._cut(f'sent {self._got} bytes in {elapsed:.0f} s')
            return False
        return True

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except TimeoutError:
            raise self._write_timeout() from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise self._write_timeout() from None

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        try:
            return super().sendfile(file, offset, count)
        except TimeoutError:
            raise self._write_timeout() from None

    def _write_timeout(self) -> OSError:
        self._cut(f'read nothing for {self.io_timeout} s')
        return BrokenPipeError(errno.EPIPE, 'client stopped reading')

    def _cut(self, what: str) -> None:
        try:
            peer = self.getpeername()
        except OSError:
            peer = '?'
        logger.info('closing a connection from %s: it %s', peer, what)
        with contextlib.suppress(OSError):
            self.shutdown(socket.SHUT_RDWR)


def simple_response(status: int, reason: str, body: bytes, ctype: str) -> bytes:
    """A complete ``Connection: close`` response, for answers the worker gives."""
    head = (
        f'HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n'
        f'Content-Length: {len(body)}\r\nConnection: close\r\n\r\n'
    )
    return head.encode('ascii') + body


def problem_response(status: int, slug: str, title: str, detail: str) -> bytes:
    """The app's problem+json format, written by the worker itself."""
    doc = problem(status, slug, title, detail)
    body = (json.dumps(doc, separators=(',', ':')) + '\n').encode()
    return simple_response(status, title, body, PROBLEM_JSON)


NO_HOST = problem_response(
    400,
    'bad-request',
    'Bad Request',
    'an HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2)',
)
MALFORMED = problem_response(
    400, 'bad-request', 'Bad Request', 'the request line or a header is malformed'
)
HEAD_TOO_LARGE = problem_response(
    431,
    'header-too-large',
    'Request Header Fields Too Large',
    'the request head is larger than this server takes (64 KiB)',
)
HEAD_TIMEOUT = problem_response(
    408,
    'request-timeout',
    'Request Timeout',
    'the request was not received in time',
)
