"""Checks made before the service starts, while errors can still be printed.

NOTE: after ``DaemonContext.open()`` the parent is gone and stderr is
/dev/null (STYLE.md trap 3), so everything that can be checked is checked
here first: the pidfile, the store, the port, the log file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
import tempfile
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from wsgi_store.backends.fs import META_NAME
from wsgi_store.config import Config, ConfigError
from wsgi_store.errors import StoreError
from wsgi_store.ops.pidfile import probe


class ServiceError(Exception):
    """The service cannot start (or be controlled); the message says why."""


def check_service(config: Config, pidfile: Path | None) -> list[str]:
    """Run every check, then create the store and the log file.

    Nothing is created before every check has passed: a refused start leaves
    no ``./store`` behind (the busy port is checked first).

    Returns:
        Warnings to print.

    Raises:
        ServiceError: the service cannot start; the message says why.
    """
    warnings = check_pidfile(pidfile) if pidfile is not None else []
    check_port(config)
    validate(config)
    create_store(config)
    if config.logfile is not None:
        check_logfile(config.logfile)
    return warnings


def validate(config: Config) -> None:
    """The checks that change nothing (``restart`` runs them before stopping)."""
    if config.tokens_file is not None:
        from wsgi_store.http.tokens import check_tokens_file

        try:
            check_tokens_file(config)
        except (ValueError, OSError) as exc:  # TokensFileError is a ValueError
            raise ServiceError(str(exc)) from None
    check_store_path(config)
    if config.logfile is not None:
        _check_dir(config.logfile.parent, 'log file')


def check_pidfile(path: Path) -> list[str]:
    """A live pidfile is an error; a stale one is removed with a warning."""
    state = probe(path)
    if state.running:
        raise ServiceError(f'already running, pid {state.pid} (pidfile {path})')
    _check_dir(path.parent, 'pidfile')
    if state.exists:
        path.unlink(missing_ok=True)
        return [f'removed the stale pidfile {path} (pid {state.pid} is not running)']
    return []


def check_store_path(config: Config) -> None:
    """Say what is wrong with the store directory, without creating anything."""
    if config.backend != 'fs':
        return  # S3 is reached only after fork (trap 6); /readyz reports it
    store = config.store_dir
    if store.exists() and not store.is_dir():
        raise ServiceError(
            f'store {store} is a file, not a directory: give --store a directory '
            '(a missing one is created)'
        )
    if store.is_dir():
        if os.statvfs(store).f_flag & os.ST_RDONLY:
            raise ServiceError(f'store {store} is on a read-only filesystem')
        if not os.access(store, os.W_OK | os.X_OK):
            raise ServiceError(f'store {store} is not writable by {_whoami()}')
        if (store / META_NAME).is_file():
            _open_store(config)  # an existing store: algorithm and layout match?
        return
    parent = store.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ServiceError(
            f'cannot create the store {store}: {parent} is not a writable '
            f'directory for {_whoami()}'
        )


def create_store(config: Config) -> None:
    """Open (creating when missing) the filesystem store and write a temp file."""
    if config.backend != 'fs':
        return
    _open_store(config)
    try:
        with tempfile.TemporaryFile(dir=config.store_dir):
            pass
    except OSError as exc:
        raise ServiceError(_store_os_error(config.store_dir, exc)) from None


def _open_store(config: Config) -> None:
    from wsgi_store.backends import make_backend

    try:
        make_backend(config).close()
    except StoreError as exc:
        raise ServiceError(exc.detail) from None  # it names the store
    except OSError as exc:
        raise ServiceError(_store_os_error(config.store_dir, exc)) from None
    except (ConfigError, ValueError) as exc:
        raise ServiceError(f'store {config.store_dir} is not usable: {exc}') from None


def _store_os_error(store: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f'store {store} is not writable by {_whoami()}'
    if exc.errno == errno.EROFS:
        return f'store {store} is on a read-only filesystem'
    if exc.errno == errno.ENOSPC:
        return f'store {store}: no space left on its filesystem'
    return f'store {store} is not usable: {exc.strerror or exc}'


def _whoami() -> str:
    try:
        return f'user {pwd.getpwuid(os.geteuid()).pw_name}'
    except KeyError:
        return f'uid {os.geteuid()}'


def check_port(config: Config) -> None:
    """Nothing listens on the configured address yet."""
    family = socket.AF_INET6 if ':' in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # gunicorn binds with SO_REUSEADDR too: TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except (OSError, OverflowError) as exc:
            raise ServiceError(
                f'cannot listen on {config.host}:{config.port}: {exc.strerror or exc}'
            ) from None


def check_logfile(path: Path) -> None:
    """The log file can be appended to (created with mode 0640)."""
    _check_dir(path.parent, 'log file')
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
    except OSError as exc:
        raise ServiceError(f'cannot write the log file {path}: {exc}') from None


def _check_dir(directory: Path, what: str) -> None:
    if not directory.is_dir():
        raise ServiceError(f'the {what} directory {directory} does not exist')
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ServiceError(f'the {what} directory {directory} is not writable')


def health_url(config: Config) -> str:
    """Where ``/healthz`` answers locally (a wildcard address means loopback)."""
    host = {'0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1'}.get(
        config.host, config.host
    )
    if ':' in host:
        host = f'[{host}]'
    return f'http://{host}:{config.port}/healthz'


def healthy(url: str) -> bool:
    """True when ``url`` answers 200 within a second."""
    # NOTE: no proxy for a loopback health check, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        opener.open(url, timeout=1.0) as resp,
    ):
        return bool(resp.status == 200)
    return False


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with open(path, errors='replace') as f:
            tail = ''.join(deque(f, maxlen=lines))
    except OSError:
        return f'(no log file {path})'
    return f'last lines of {path}:\n{tail}'.rstrip()
