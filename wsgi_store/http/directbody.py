"""Read a ``Content-Length`` body straight from gunicorn's socket into our buffer.

gunicorn's ``Body.read`` copies every piece through a ``BytesIO`` (and its
unreader through another): for a 100 MiB upload that was over a third of the
worker's time. When it is safe, :func:`direct_reader` returns a reader whose
``readinto`` takes first what gunicorn already buffered beyond the headers, then
``recv_into`` on the socket, and keeps gunicorn's own accounting true
(``LengthReader.length``), so gunicorn sees a fully read body afterwards.

Safe means: the request body is gunicorn's ``Body`` over a ``LengthReader`` over
a ``SocketUnreader`` (a Content-Length body on a socket: not chunked, no
``IterUnreader``), nothing of it has been read or buffered by ``Body`` yet.
Otherwise (chunked, another server, a test client) the caller keeps ``read``.

NOTE: a failed or short read marks ``Body.failed``: where the next request
would start on the connection is unknown, so gunicorn must not reuse it.
"""

from __future__ import annotations

import io
import logging
from typing import Any

logger = logging.getLogger(__name__)

try:  # gunicorn is the server we know; without it there is no fast path
    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader
except ImportError:  # pragma: no cover - gunicorn is a dependency
    Body = LengthReader = SocketUnreader = None  # type: ignore[assignment,misc]


class DirectReader:
    """``readinto`` for the rest of a gunicorn Content-Length body."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self._length_reader = body.reader
        self._unreader = body.reader.unreader
        self._recv_into = body.reader.unreader.sock.recv_into

    @property
    def left(self) -> int:
        """Body bytes not read yet."""
        return int(self._length_reader.length)

    def readinto(self, view: memoryview) -> int:
        """Read up to ``len(view)`` body bytes into ``view``; 0 at the end.

        0 before ``left`` reaches 0 means the client stopped sending (closed,
        or the socket's deadline passed): a short body.
        """
        want = min(len(view), self.left)
        if want <= 0:
            return 0
        got = self._take_buffered(view, want)
        if not got:
            try:
                got = self._recv_into(view[:want])
            except TimeoutError:
                got = 0  # a deadline: as a client that stopped sending
            except BaseException:
                self._body.failed = True
                raise
        if not got:
            self._body.failed = True
            return 0
        self._length_reader.length -= got
        return got

    def _take_buffered(self, view: memoryview, want: int) -> int:
        data = self._unreader.buf.getvalue()
        if not data:
            return 0
        used = data[:want]
        view[: len(used)] = used
        rest = io.BytesIO()
        rest.write(data[len(used) :])  # a pipelined next request stays there
        self._unreader.buf = rest
        return len(used)


def direct_reader(wsgi_input: object, length: int | None) -> DirectReader | None:
    """A :class:`DirectReader` when it is safe for this body (see the module)."""
    if Body is None or length is None or type(wsgi_input) is not Body:
        return None
    body: Any = wsgi_input
    reader = body.reader
    if type(reader) is not LengthReader or reader.length != length:
        return None  # not a Content-Length body, or some of it was read already
    if body.buf.tell() or getattr(body, 'failed', False):
        return None
    unreader = reader.unreader
    if not isinstance(unreader, SocketUnreader):
        return None
    if not hasattr(unreader.sock, 'recv_into') or not isinstance(
        unreader.buf, io.BytesIO
    ):
        return None
    return DirectReader(body)
