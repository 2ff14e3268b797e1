"""Embedded gunicorn: one settings function for gunicorn.conf.py and filestorectl.

:func:`gunicorn_settings` turns a :class:`Config` into gunicorn settings;
``gunicorn.conf.py`` puts them in its globals and :class:`StoreApplication`
(used by ``filestorectl start`` and ``filestorectl run``) sets them on its own
``gunicorn.config.Config``. gunicorn's ``daemon`` and ``pidfile`` stay off:
python-daemon and our own pidfile do that job (see ``daemon.py``).
"""

from __future__ import annotations

import functools
import logging
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from wsgi_store.config import Config
from wsgi_store.ops import hooks
from wsgi_store.ops.logs import logconfig_dict
from wsgi_store.ops.workers import worker_class

logger = logging.getLogger(__name__)

# Settings a --config file may not change: the daemon owns them.
_RESERVED = frozenset({'daemon', 'pidfile', 'wsgi_app'})


class StoreLogger(glogging.Logger):
    """gunicorn's logger: no access lines of its own, and every log file
    reopened on SIGUSR1.

    The app's access-log middleware writes the access lines (request id,
    redaction), so gunicorn's own would be a second, costlier copy (~30 µs a
    request even with no handler). gunicorn reopens only its own loggers'
    files on USR1 (logrotate's ``postrotate``); the app's loggers are
    reopened here too.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return

    def reopen_files(self) -> None:
        # gunicorn reopens the file handlers of every *named* logger; the root
        # logger's (where the app's lines go, see logs.py) are the ones it misses.
        super().reopen_files()
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and handler.stream:
                handler.acquire()
                try:
                    handler.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


def bind_address(config: Config) -> str:
    """gunicorn's ``bind`` string for the configured host and port."""
    if ':' in config.host:  # IPv6 literal
        return f'[{config.host}]:{config.port}'
    return f'{config.host}:{config.port}'


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """All gunicorn settings for ``config`` (names as in gunicorn.conf.py).

    Args:
        config: the resolved configuration.

    Returns:
        A dict of gunicorn setting names to values, hooks included (bound to
        ``config``). ``wsgi_app`` is not included: gunicorn.conf.py names the
        module, :class:`StoreApplication` builds the app itself.
    """
    settings: dict[str, Any] = {
        'bind': [bind_address(config)],
        'backlog': config.backlog,
        # gthread: 2 workers x 8 threads served large files at nginx's sendfile
        # rate and small requests best on the 2-core reference machine. Our
        # subclass adds deadlines for slow clients (wsgi_store/ops/workers.py).
        'worker_class': worker_class(config),
        'workers': config.workers,
        'threads': config.threads,
        'timeout': config.timeout,
        'graceful_timeout': config.graceful_timeout,
        'keepalive': config.keepalive,
        # No 'sendfile' key: gunicorn's setting only exists to turn sendfile OFF
        # (any value but None disables it), and downloads must use it.
        # A request line or header block larger than this is refused (400).
        'limit_request_line': 8190,
        'limit_request_fields': 100,
        'limit_request_field_size': 8190,
        'forwarded_allow_ips': config.forwarded_allow_ips,
        'proc_name': 'wsgi-store',
        'loglevel': config.log_level.lower(),
        'logconfig_dict': logconfig_dict(config),
        'logger_class': StoreLogger,
        # Access lines come from the app's middleware (wsgi_store.http.accesslog).
        'accesslog': None,
        'daemon': False,
        'pidfile': None,
        # gunicorn >= 25's control socket defaults to one path per user
        # (~/.gunicorn/gunicorn.ctl): two stores would fight over it, and
        # systemd's ProtectHome hides it. Signals and filestorectl do the job.
        'control_socket_disable': True,
        'on_starting': functools.partial(hooks.on_starting, config),
        'on_reload': functools.partial(hooks.on_reload, config),
        'child_exit': functools.partial(hooks.child_exit, config),
    }
    if config.logfile:
        # stdout/stderr (tracebacks, warnings) go to the log file as well, and
        # gunicorn reopens it with the others on SIGUSR1.
        settings['errorlog'] = str(config.logfile)
        settings['capture_output'] = True
    return settings


def read_settings_file(path: Path) -> dict[str, Any]:
    """The module-level names of a gunicorn.conf.py-style file."""
    namespace = runpy.run_path(str(path))
    return {k: v for k, v in namespace.items() if not k.startswith('_')}


class StoreApplication(BaseApplication):
    """gunicorn embedded: settings from :func:`gunicorn_settings`, app from
    :func:`create_app`.

    Args:
        config: the resolved configuration.
        settings_file: an optional gunicorn.conf.py whose settings override
            ours; it is read again on every SIGHUP.
        extra: more settings applied last (e.g. a ``when_ready`` hook).
    """

    def __init__(
        self,
        config: Config,
        settings_file: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.settings_file = settings_file
        self.extra = dict(extra or {})
        super().__init__(prog='filestorectl')

    def load_config(self) -> None:
        """Fill ``self.cfg`` from scratch (gunicorn calls this again on HUP)."""
        settings = gunicorn_settings(self.config)
        if self.settings_file is not None:
            settings.update(read_settings_file(self.settings_file))
        settings.update(self.extra)
        for name, value in settings.items():
            if name in _RESERVED or name not in self.cfg.settings:
                continue
            self.cfg.set(name, value)

    def load(self) -> Callable[..., Any]:
        """Build the WSGI app (in each worker, after fork)."""
        from wsgi_store.app import create_app

        return create_app(self.config)
