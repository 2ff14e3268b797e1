"""Logging setup shared by gunicorn.conf.py and filestorectl."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from wsgi_store.config import Config

TEXT_FORMAT = (
    '%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s rid=%(request_id)s'
)
FLUSH_SECONDS = 1.0


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the X-Request-ID being handled, or ``-``) to records,
    so an error in the app log can be matched with its access line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from wsgi_store.http.accesslog import current_request_id

        record.request_id = current_request_id.get()
        return True


class _DeferredFlush:
    """Flush an access log at most once a second instead of after every line.

    A flush is a write(2) per request on the small-request hot path; like
    nginx's ``access_log ... buffer= flush=1s``, lines are written in batches,
    at the latest ``FLUSH_SECONDS`` after they were logged (a per-process
    daemon thread flushes an idle log), and on close (USR1 reopen, exit).
    """

    _last = 0.0
    _owner_pid = 0

    def flush(self) -> None:
        now = time.monotonic()
        if now - self._last >= FLUSH_SECONDS:
            self._last = now
            super().flush()  # type: ignore[misc]
        elif self._owner_pid != os.getpid():  # first line in this process
            self._owner_pid = os.getpid()
            threading.Thread(
                target=self._ticker, daemon=True, name='access-log-flush'
            ).start()

    def _ticker(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.acquire()  # type: ignore[attr-defined]
            try:
                self._last = time.monotonic()
                super().flush()  # type: ignore[misc]
            finally:
                self.release()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._last = 0.0
        self.flush()
        super().close()  # type: ignore[misc]


class AccessFileHandler(_DeferredFlush, logging.FileHandler):
    """The access log's file handler (batched flushes)."""


class AccessStreamHandler(_DeferredFlush, logging.StreamHandler):
    """The access log on stderr (batched flushes)."""


def logconfig_dict(config: Config) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the app's loggers and gunicorn's."""
    target = str(config.logfile) if config.logfile else None
    handler: dict[str, Any] = (
        {'class': 'logging.FileHandler', 'filename': target, 'formatter': 'text'}
        if target
        else {
            'class': 'logging.StreamHandler',
            'stream': 'ext://sys.stderr',
            'formatter': 'text',
        }
    )
    handler['filters'] = ['request_id']
    access: dict[str, Any] = dict(
        handler,
        formatter='access',
        **{'class': f'{__name__}.Access{"File" if target else "Stream"}Handler'},
    )
    return {
        'version': 1,
        'disable_existing_loggers': False,
        'filters': {'request_id': {'()': RequestIdFilter}},
        'formatters': {
            'text': {'format': TEXT_FORMAT},
            'access': {'format': '%(message)s'},
        },
        'handlers': {'main': handler, 'access': access},
        'root': {'level': config.log_level.upper(), 'handlers': ['main']},
        'loggers': {
            'gunicorn.error': {
                'level': config.log_level.upper(),
                'handlers': ['main'],
                'propagate': False,
            },
            # The app's middleware writes the access log (request id, redaction);
            # gunicorn's own access lines are dropped so nothing is logged twice.
            'gunicorn.access': {'handlers': [], 'propagate': False},
            'wsgi_store.access': {
                # Off: the middleware still echoes X-Request-ID, writes nothing.
                'level': 'INFO' if config.access_log else 'WARNING',
                'handlers': ['access'],
                'propagate': False,
            },
        },
    }
