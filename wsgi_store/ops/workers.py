"""The gunicorn worker of wsgi-store: gthread with deadlines for slow clients.

gthread hands a connection to a thread as soon as it is readable; the thread
then blocks in the parser and in body reads for as long as the client likes
(STYLE.md trap 13). :class:`StoreWorker` changes three things and leaves the rest
(keep-alive, sendfile, graceful stop) to gthread:

* The request head is gathered in the poller, without a thread, and must be
  complete within ``HEADER_TIMEOUT`` (a head over 64 KiB is a 431). A small body
  (up to ``BODY_BUFFER_BYTES``) is gathered there too, ``BODY_IDLE_TIMEOUT``
  allowed between reads: slow clients cost a buffer, not a thread.
* Requests whose body is still on its way (large, chunked, ``Expect:
  100-continue``) run on their own pool of ``UPLOAD_THREADS`` threads.
* Every blocking read or write on a client socket times out after
  ``BODY_IDLE_TIMEOUT``, and a body slower than ``BODY_MIN_RATE_BYTES`` per second
  after that long is cut (the app sees a short body and removes its temp file).

It also refuses HTTP/1.1 without ``Host`` (RFC 9112 3.2) and answers ``Expect:
100-continue`` over the upload limit with the app's 413, not ``100 Continue``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from wsgi_store.config import Config
from wsgi_store.ops import clientsocket as answers
from wsgi_store.ops.clientsocket import DeadlineSocket
from wsgi_store.ops.requesthead import MAIN, hopeless, plan

logger = logging.getLogger(__name__)

HEAD_GATHER_CAP = 64 * 1024


class StoreWorker(ThreadWorker):
    """gthread with a head-gathering poller, an upload pool and socket deadlines.

    ``store_config`` is bound by :func:`worker_class`; without it the worker
    reads the ``WSGI_STORE_*`` environment like gunicorn.conf.py does.
    """

    store_config: Config | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.store_config or Config.from_env()
        self.header_timeout = float(config.header_timeout)
        self.body_idle_timeout = float(config.body_idle_timeout)
        self.body_buffer = config.body_buffer_bytes
        self.body_min_rate = config.body_min_rate_bytes
        self.max_upload = config.max_upload_bytes
        self.upload_threads = config.upload_threads or self.cfg.threads
        self.upload_pool: futures.ThreadPoolExecutor | None = None
        # Connections whose next request is being gathered (insertion order).
        self.gathering: dict[TConn, None] = {}
        # Past this many bytes without a complete head the request is refused
        # (431), never handed to gunicorn's parser half-read. Capped so that a
        # thousand gathering connections stay within ~64 MiB of buffers.
        self.head_cap = min(
            HEAD_GATHER_CAP,
            self.cfg.limit_request_line
            + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
            + 4,
        )
        # TLS and HTTP/2 prior knowledge read the socket before parsing:
        # those connections keep gthread's own path.
        self.gather = not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(
            self.cfg, ('127.0.0.1', 0)
        )

    # -- pools ---------------------------------------------------------------
    def init_process(self) -> None:
        self.upload_pool = futures.ThreadPoolExecutor(
            max_workers=self.upload_threads, thread_name_prefix='upload'
        )
        super().init_process()

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.upload_pool is not None:
                self.upload_pool.shutdown(wait=False)

    def handle_quit(self, sig: Any, frame: Any) -> None:
        if self.upload_pool is not None:
            self.upload_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)

    def enqueue_req(self, conn: TConn) -> None:
        """Run a gathered request on its pool, or gather the next one first."""
        lane = getattr(conn, 'lane', None)
        if not self.gather:
            super().enqueue_req(conn)
        elif lane is None:
            self._gather(conn)
        else:
            conn.lane = None
            pool = self.tpool if lane == MAIN else self.upload_pool
            fut = pool.submit(self.handle, conn)
            fut.add_done_callback(
                lambda f: self.method_queue.defer(self.finish_request, conn, f)
            )

    # -- gathering in the poller -----------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        if not self.gather:
            super().accept(listener)
            return
        try:
            plain, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client = DeadlineSocket(fileno=plain.detach())
        client.io_timeout = self.body_idle_timeout
        client.min_rate = self.body_min_rate
        self._gather(TConn(self.cfg, client, addr, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection sends its next request: gather it."""
        if not self.gather:
            super().on_client_socket_readable(conn, client)
            return
        self.keepalived_conns.remove(conn)
        self._gather(conn, registered=True)

    def _gather(self, conn: TConn, registered: bool = False) -> None:
        leftover = conn.parser.unreader.take_buffered() if conn.parser else b''
        conn.head = bytearray(leftover)
        conn.need = None
        conn.deadline = time.monotonic() + self.header_timeout
        conn.sock.setblocking(False)
        self.gathering[conn] = None
        callback = partial(self._on_readable, conn)
        if registered:  # one epoll_ctl instead of two
            self.poller.modify(conn.sock, selectors.EVENT_READ, callback)
        else:
            self.poller.register(conn.sock, selectors.EVENT_READ, callback)
        if conn.head:
            self._check(conn)
        if conn in self.gathering:
            # Often readable already (a kept-alive connection, or a client that
            # wrote right after connecting): save a trip through the poller.
            self._on_readable(conn)

    def _on_readable(self, conn: TConn, _fileobj: object = None) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b''
        if not data:  # the client closed (or reset) before a whole request
            self._drop(conn)
            return
        conn.head += data
        if conn.need is not None:
            conn.deadline = time.monotonic() + self.body_idle_timeout
        self._check(conn)

    def _check(self, conn: TConn) -> None:
        if conn.need is None:
            found = plan(bytes(conn.head), self.max_upload, self.body_buffer)
            if found is None:
                head = bytes(conn.head)
                if hopeless(head, self.cfg.limit_request_line):
                    # gunicorn would wait for the end of the line first
                    conn.refuse = answers.MALFORMED
                    self._dispatch(conn, MAIN)
                elif len(head) > self.head_cap:
                    # NOTE: never hand an unfinished head to gunicorn's parser: it
                    # would hold a thread (and up to ~800 KiB) until the deadline.
                    conn.refuse = answers.HEAD_TOO_LARGE
                    self._dispatch(conn, MAIN)
                return
            conn.lane, conn.need = found
            conn.deadline = time.monotonic() + self.body_idle_timeout
        if len(conn.head) >= conn.need:
            self._dispatch(conn, conn.lane)

    def _dispatch(self, conn: TConn, lane: str) -> None:
        self.poller.unregister(conn.sock)
        del self.gathering[conn]
        conn.lane = lane
        self.enqueue_req(conn)

    def _drop(self, conn: TConn, answer: bytes = b'') -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.gathering.pop(conn, None)
        self.nr_conns -= 1
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)
        conn.close()

    def murder_pending(self) -> None:
        """Also close connections that missed their head or body deadline."""
        super().murder_pending()
        now = time.monotonic()
        for conn in list(self.gathering):
            if conn.deadline <= now:
                # 408 only to a client that started a request (RFC 9110 15.5.9)
                self._drop(conn, answers.HEAD_TIMEOUT if conn.head else b'')
            elif not self.alive and not conn.head:
                self._drop(conn)

    # -- in a thread -----------------------------------------------------------
    def handle(self, conn: TConn) -> Any:
        answer = getattr(conn, 'refuse', None)
        if answer:
            conn.sock.setblocking(True)
            with contextlib.suppress(OSError):
                util.write(conn.sock, answer)
            result = False
        else:
            result = self._handle_gathered(conn)
        if result is False and isinstance(conn.sock, DeadlineSocket):
            # Lingering close here, not in finish_request on the poller's thread.
            conn.sock.io_timeout = None
            util.close_graceful(conn.sock)
        return result

    def _handle_gathered(self, conn: TConn) -> Any:
        head = getattr(conn, 'head', None)
        if head:
            conn.head = None
            try:
                conn.init()
            except OSError:
                return False
            conn.parser.unreader.unread(bytes(head))
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> bool:
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.start_request()
        if req.version >= (1, 1) and not any(n == 'HOST' for n, _ in req.headers):
            util.write(conn.sock, answers.NO_HOST)
            return False
        if req._expected_100_continue and self.max_upload:
            length = _content_length(req)
            if length is not None and length > self.max_upload:
                # No "100 Continue": the app's 413 goes out before any body,
                # and the connection closes instead of draining it.
                req._expected_100_continue = False
                req.must_close = True
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        # NOTE: gthread drains the unread body under a socket timeout it sets
        # and restores: two ioctls (each releases the GIL) on every request,
        # also when the body was empty or read to its end. Nothing to drain then.
        if keepalive and _body_consumed(conn.parser):
            return True
        return bool(super()._keepalive_after(conn, keepalive))


def _body_consumed(parser: Any) -> bool:
    """True when the request's Content-Length body has been read to its end."""
    body = getattr(getattr(parser, 'mesg', None), 'body', None)
    reader = getattr(body, 'reader', None)
    return (
        isinstance(reader, LengthReader)
        and reader.length == 0
        and getattr(body, 'failed', False) is False
    )


def _content_length(req: Any) -> int | None:
    for name, value in req.headers:
        if name == 'CONTENT-LENGTH':
            try:
                return int(value)
            except ValueError:
                return None
    return None


def worker_class(config: Config) -> type[StoreWorker]:
    """A :class:`StoreWorker` bound to ``config`` (gunicorn's ``worker_class``)."""
    return type('StoreWorker', (StoreWorker,), {'store_config': config})
