"""Where a request goes once its head has arrived (for :mod:`wsgi_store.ops.workers`).

:func:`plan` only schedules: it reads just enough of the head to decide how
many bytes to gather before a thread is taken, and on which pool. Every byte is
handed to gunicorn's parser unchanged afterwards, so a head this code misreads
is still parsed (and refused, if it must be) by gunicorn alone.
"""

from __future__ import annotations

import re

MAIN = 'main'  # the request is complete in the buffer: the main pool
UPLOAD = 'upload'  # its body is still on its way: the upload pool


def head_end(data: bytes) -> int | None:
    """The index just past the head's blank line, or None while incomplete."""
    start = len(data) - len(data.lstrip(b'\r\n'))  # RFC 9112 2.2: skip leading CRLFs
    end = data.find(b'\r\n\r\n', start)
    return None if end < 0 else end + 4


# A request line as RFC 9112 3 has it (method, target, version), and what may
# never appear in a field line. Only used to hand hopeless input to gunicorn at
# once, which then refuses it, instead of waiting for the header deadline.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]+ HTTP/\d\.\d")
_NOT_IN_REQUEST_LINE = re.compile(rb'[^\x20-\x7e]')
_NOT_IN_FIELD_LINES = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')


def hopeless(data: bytes, line_limit: int) -> bool:
    """True when ``data`` can no longer become a valid request head."""
    data = data.lstrip(b'\r\n')
    first, crlf, rest = data.partition(b'\r\n')
    if len(first) > line_limit or _NOT_IN_REQUEST_LINE.search(first):
        return True
    if not crlf:
        return False  # the request line is still arriving
    if not _REQUEST_LINE.fullmatch(first):
        return True
    lines = rest[: rest.rfind(b'\r\n') + 2].replace(b'\r\n', b'')
    return bool(_NOT_IN_FIELD_LINES.search(lines))


def plan(data: bytes, max_upload: int, body_buffer: int) -> tuple[str, int] | None:
    """Decide the pool and the bytes to gather for the request starting ``data``.

    Args:
        data: what the connection has sent so far.
        max_upload: the upload limit in bytes (0 = none).
        body_buffer: bodies up to this size are gathered before a thread is used.

    Returns:
        ``(pool, bytes needed)``, or None while the head is incomplete.
    """
    end = head_end(data)
    if end is None:
        return None
    fields: dict[bytes, bytes] = {}
    for line in data[:end].strip(b'\r\n').split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        fields[name.strip().lower()] = value.strip()
    if b'transfer-encoding' in fields:
        return UPLOAD, end
    try:
        length = int(fields.get(b'content-length', b'0'))
    except ValueError:
        return MAIN, end  # gunicorn refuses it at once
    if length <= 0:
        return MAIN, end
    if fields.get(b'expect', b'').lower() == b'100-continue':
        # The client waits for "100 Continue" (or the refusal) before sending.
        over = bool(max_upload) and length > max_upload
        return (MAIN if over else UPLOAD), end
    if length <= body_buffer:
        return MAIN, end + length
    return UPLOAD, end
