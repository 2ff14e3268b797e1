"""Access log: one line per request on the ``wsgi_store.access`` logger.

Each line carries the time, client address, method, request target (query
secrets redacted), status, response bytes, duration and a request id. The id is
the client's (or nginx's) ``X-Request-ID`` when it is sane, else a new random
one, and is echoed in the response's ``X-Request-ID``. Headers are never logged,
so neither is ``Authorization``.

Text format::

    2025-01-31T12:00:00.123Z 127.0.0.1 "GET /files/ab12?token=REDACTED HTTP/1.1"
    200 1024 0.412ms rid=4f1c0e... "curl/8.5.0"

(one line in the log).

JSON format (``--log-format json``): one object per line with the keys
``time``, ``remote``, ``method``, ``path``, ``protocol``, ``status``, ``bytes``
(null when unknown), ``duration_ms``, ``request_id``, ``user_agent``.

``duration`` is measured until the app hands the response to the server: a
large download streams after that.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from random import getrandbits
from time import perf_counter
from urllib.parse import quote, unquote_plus

import falcon

logger = logging.getLogger('wsgi_store.access')

REQUEST_ID_HEADER = 'X-Request-ID'
_TOKEN_KEY = 'wsgi_store.request_id_token'  # in the WSGI environ
# The request being handled by this thread, for the app's own log lines
# (wsgi_store.ops.logs.RequestIdFilter puts it in every record).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    'current_request_id', default='-'
)
_SANE_ID = re.compile(r'[A-Za-z0-9._-]{1,128}')
REDACTED = 'REDACTED'
SECRET_PARAMS = frozenset(
    {'auth', 'authorization', 'key', 'api_key', 'apikey', 'sig', 'jwt', 'session'}
)
# Any parameter whose (decoded, lowercased) name contains one of these.
SECRET_WORDS = ('token', 'secret', 'passw', 'signature', 'credential')
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def request_id(value: str | None) -> str:
    """The given request id when sane (1-128 of ``[A-Za-z0-9._-]``), else a new one."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    # 128 random bits; the random module reseeds itself in each forked worker.
    return f'{getrandbits(128):032x}'


def is_secret(name: str) -> bool:
    """True for a query parameter name whose value must not be logged."""
    lowered = unquote_plus(name).lower()
    return lowered in SECRET_PARAMS or any(w in lowered for w in SECRET_WORDS)


def redact_target(target: str) -> str:
    """The request target with the values of secret query parameters replaced."""
    path, sep, query = target.partition('?')
    if not sep or not query:
        return target
    parts = query.split('&')
    for i, part in enumerate(parts):
        name, eq, _ = part.partition('=')
        if is_secret(name):
            parts[i] = f'{name}={REDACTED}' if eq else name
    return f'{path}?{"&".join(parts)}'


def escape(text: str) -> str:
    r"""Make untrusted text safe for one text log line (``\xNN`` escapes)."""
    if text.isascii() and text.isprintable() and '"' not in text and '\\' not in text:
        return text
    return _UNSAFE.sub(lambda m: ''.join(f'\\x{b:02x}' for b in m[0].encode()), text)


def _target(req: falcon.Request) -> str:
    raw = req.env.get('RAW_URI')  # gunicorn: the target exactly as sent
    if raw is None:
        raw = quote(req.env.get('PATH_INFO') or '/', safe="/;=,~!$&'()*+:@")
        query = req.env.get('QUERY_STRING')
        if query:
            raw = f'{raw}?{query}'
    return redact_target(raw)


def _body_bytes(req: falcon.Request, resp: falcon.Response, status: int) -> int | None:
    if req.method == 'HEAD' or status in (204, 304):
        return 0
    length = resp.content_length
    if length is not None:
        return int(length)
    if resp.data is not None:
        return len(resp.data)
    if resp.text is not None:
        return len(resp.text.encode())
    return None  # a stream without a length, or an X-Accel-Redirect


_second_text: tuple[int, str] = (-1, '')  # one tuple, swapped whole (threads)


def _timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds (the seconds part cached: it is per line)."""
    global _second_text
    second = int(now)
    cached, text = _second_text
    if cached != second:
        text = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))
        _second_text = (second, text)
    return f'{text}.{int((now - second) * 1000):03d}Z'


class AccessLog:
    """Falcon middleware writing the access log; put it first (outermost).

    Args:
        log_format: ``'text'`` or ``'json'``.
        log: the logger to write to (``wsgi_store.access``).
    """

    def __init__(self, log_format: str = 'text', log: logging.Logger = logger) -> None:
        if log_format not in ('text', 'json'):
            raise ValueError('log_format must be "text" or "json"')
        self.json = log_format == 'json'
        self.log = log
        self._records = _RecordFactory(log)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.access_start = perf_counter()
        req.context.request_id = request_id(req.get_header(REQUEST_ID_HEADER))
        req.env[_TOKEN_KEY] = current_request_id.set(req.context.request_id)

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        rid = getattr(req.context, 'request_id', None) or request_id(None)
        resp.set_header(REQUEST_ID_HEADER, rid)
        if self.log.isEnabledFor(logging.INFO):
            self._write(req, resp, rid)

    def _write(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        start = getattr(req.context, 'access_start', None)
        duration_ms = (perf_counter() - start) * 1000 if start is not None else 0.0
        status = resp.status_code
        fields = {
            'time': _timestamp(time.time()),
            'remote': req.remote_addr,
            'method': req.method,
            'path': _target(req),
            'protocol': req.env.get('SERVER_PROTOCOL', 'HTTP/1.1'),
            'status': status,
            'bytes': _body_bytes(req, resp, status),
            'duration_ms': round(duration_ms, 3),
            'request_id': rid,
            'user_agent': req.user_agent,
        }
        line = json.dumps(fields) if self.json else _text_line(fields)
        # What info() does, minus the stack walk (findCaller) and the ~20
        # attribute lookups of LogRecord.__init__ a per-request line repeats.
        self.log.handle(self._records.make(line))


class _RecordFactory:
    """Access-log records copied from a prototype instead of built field by field.

    A record made by ``Logger.makeRecord`` once per process is the template:
    every field but the message, the times and the thread is the same for each
    access line, so a copy of its ``__dict__`` is a complete, ordinary
    ``LogRecord`` (any handler, filter or formatter sees what it always sees).
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._pid = -1
        self._proto: dict[str, object] = {}

    def make(self, line: str) -> logging.LogRecord:
        """An INFO record of ``line`` on the access logger, made now."""
        pid = os.getpid()
        if pid != self._pid:  # first line, or a forked child (its own pid)
            proto = self.log.makeRecord(
                self.log.name, logging.INFO, '', 0, '', (), None
            )
            self._proto, self._pid = dict(proto.__dict__), pid
        record = _LogRecord.__new__(_LogRecord)
        fields = record.__dict__
        fields.update(self._proto)
        now = time.time()
        fields['msg'] = line
        fields['created'] = now
        fields['msecs'] = int((now - int(now)) * 1000) + 0.0
        fields['relativeCreated'] = (now - logging._startTime) * 1000
        if logging.logThreads:
            fields['thread'] = threading.get_ident()
            fields['threadName'] = threading.current_thread().name
        return record


_LogRecord = logging.LogRecord


def scoped_to_response(body: Iterable[bytes], env: dict) -> Iterable[bytes]:
    """Keep the request id until the server is done with the response body.

    A body that is complete (a list) or sent by ``sendfile`` logs nothing later,
    so the id is reset at once; a streamed one (a verifying reader, S3) may log
    while it is sent, so the id is reset when the server closes it. Either way
    a line logged between requests says ``rid=-``.
    """
    wrapper = env.get('wsgi.file_wrapper')
    if isinstance(body, list) or (wrapper is not None and isinstance(body, wrapper)):
        _forget_request_id(env)
        return body
    return _ForgetOnClose(body, env)


class _ForgetOnClose:
    """A streamed response body; closing it resets the request id."""

    def __init__(self, body: Iterable[bytes], env: dict) -> None:
        self._body, self._env = body, env

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, 'close', None)
            if close is not None:
                close()
        finally:
            _forget_request_id(self._env)


def _forget_request_id(env: dict) -> None:
    token = env.pop(_TOKEN_KEY, None)
    if token is None:
        return
    try:
        current_request_id.reset(token)
    except ValueError:  # set in another context (not under a WSGI server)
        current_request_id.set('-')


def _text_line(f: dict) -> str:
    size = '-' if f['bytes'] is None else f['bytes']
    return (
        f'{f["time"]} {escape(str(f["remote"]))} "{escape(f["method"])} '
        f'{escape(f["path"])} {escape(f["protocol"])}" {f["status"]} {size} '
        f'{f["duration_ms"]:.3f}ms rid={f["request_id"]} '
        f'"{escape(f["user_agent"] or "-")}"'
    )
