"""The service side of filestorectl: become a daemon, hold the pidfile, serve.

Runs in the process that becomes the gunicorn master. Nothing here prints:
stdout and stderr are the log file once detached.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import daemon

from wsgi_store.config import Config
from wsgi_store.ops.pidfile import AlreadyLocked, PidFile
from wsgi_store.ops.server import StoreApplication

logger = logging.getLogger(__name__)

UMASK = 0o027  # NOTE: DaemonContext's default is 0 (trap 4): files would be 0666


class Reporter:
    """One line back to ``filestorectl start`` through a pipe, then closed.

    Args:
        fd: the pipe's write end, or None when nobody waits (``run``).
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.owner = os.getpid()

    def send(self, message: str) -> None:
        """Write ``message`` and close the pipe (later calls do nothing)."""
        if self.fd is None or self.owner != os.getpid():
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, message.encode() + b'\n')
        except OSError:
            logger.warning('filestorectl start is no longer waiting for us')
        finally:
            os.close(fd)

    def when_ready(self, server: object) -> None:
        """gunicorn hook: the master listens; workers fork right after this."""
        self.send(f'ready {os.getpid()}')


def serve_daemon(config: Config, settings_file: Path | None, report_fd: int) -> int:
    """Detach with python-daemon, then serve (in the forked child of ``start``).

    Args:
        config: resolved settings; ``config.logfile`` must be set.
        settings_file: optional gunicorn.conf.py overriding our settings.
        report_fd: the pipe to ``filestorectl start``.

    Returns:
        The exit code (gunicorn's master and workers leave by SystemExit).
    """
    assert config.logfile is not None
    # Opened before detaching (paths are absolute; DaemonContext chdirs to /),
    # with an explicit mode; it becomes stdout and stderr of the daemon.
    fd = os.open(config.logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    log = os.fdopen(fd, 'a', buffering=1)
    context = daemon.DaemonContext(
        working_directory='/',
        umask=UMASK,
        detach_process=True,
        files_preserve=[report_fd],
        stdout=log,
        stderr=log,
        signal_map={},  # gunicorn installs its own handlers for every signal
    )
    # NOTE: no pidfile= here: workers unwind through this block (trap 2); our
    # PidFile releases only in the process that acquired it.
    with context:
        return serve(config, settings_file, config.pidfile, Reporter(report_fd))


def serve_foreground(
    config: Config, settings_file: Path | None, pidfile: Path | None
) -> int:
    """Serve in this process (``filestorectl run``); returns the exit code."""
    return serve(config, settings_file, pidfile, Reporter(None))


def serve(
    config: Config,
    settings_file: Path | None,
    pidfile_path: Path | None,
    reporter: Reporter,
) -> int:
    """Take the pidfile (if any) and run gunicorn until it stops."""
    pidfile = PidFile(pidfile_path) if pidfile_path is not None else None
    try:
        if pidfile is not None:
            pidfile.acquire()
    except AlreadyLocked as exc:
        reporter.send(f'error already running, pid {exc.pid}')
        return 1
    except OSError as exc:
        reporter.send(f'error cannot write the pidfile {pidfile_path}: {exc}')
        return 1
    try:
        app = StoreApplication(
            config, settings_file, extra={'when_ready': reporter.when_ready}
        )
        app.run()
        return 0
    finally:
        reporter.send('error gunicorn exited before it was ready (see the log)')
        if pidfile is not None:
            pidfile.release()
