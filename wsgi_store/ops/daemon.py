"""filestorectl's service control: start/stop/restart/reload/status/get_pid/run.

These functions run in the ``filestorectl`` process and talk to the user
(stdout, stderr, exit codes); the service itself only logs. ``start`` checks
everything it can *before* detaching (STYLE.md trap 3), forks, and the child
becomes the daemon with python-daemon's :class:`daemon.DaemonContext`, takes
the pidfile lock and runs the embedded gunicorn. The daemon reports back
through a pipe ("ready PID" or "error ..."); ``start`` then waits for
``/healthz`` and only then returns 0.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

from wsgi_store.config import Config
from wsgi_store.ops.pidfile import alive, children, kill_all, probe
from wsgi_store.ops.pidfile import wait_gone as _wait_gone
from wsgi_store.ops.preflight import (
    ServiceError,
    check_service,
    health_url,
    healthy,
    log_tail,
    validate,
)

START_TIMEOUT = 30.0
LOG_NAME = 'wsgi-store.log'
EXIT_NOT_RUNNING = 3  # LSB: status of a service that is not running
EXIT_DEAD_WITH_PIDFILE = 1
EXIT_RELOAD_NOT_RUNNING = 7  # LSB: "program is not running" for other actions
EXIT_STATUS_UNKNOWN = 4  # LSB: status unknown (the port answers, no pidfile says so)


def _say(message: str) -> None:
    print(message, flush=True)


def _err(message: str) -> None:
    print(f'filestorectl: {message}', file=sys.stderr, flush=True)


def with_logfile(config: Config) -> Config:
    """The daemon always logs to a file: ``--logfile`` or next to the pidfile."""
    if config.logfile is not None:
        return config
    return config.replace(logfile=config.pidfile.parent / LOG_NAME)


def start(
    config: Config, settings_file: Path | None = None, timeout: float = START_TIMEOUT
) -> int:
    """Start the daemon; return 0 once it answers ``/healthz``, else 1."""
    config = with_logfile(config)
    try:
        for warning in check_service(config, config.pidfile):
            _err(f'warning: {warning}')
    except ServiceError as exc:
        _err(str(exc))
        return 1
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the daemon (tests see its effects)
        os.close(read_fd)
        _become_daemon(config, settings_file, write_fd)
    os.close(write_fd)
    os.waitpid(child, 0)  # it exits as soon as DaemonContext has forked
    try:
        return _await_ready(config, read_fd, timeout)
    finally:
        os.close(read_fd)


def _become_daemon(config: Config, settings_file: Path | None, report_fd: int) -> None:
    """In the forked child: detach, lock the pidfile, serve; never returns."""
    from wsgi_store.ops.service import serve_daemon

    code = 1
    try:
        code = serve_daemon(config, settings_file, report_fd)
    except SystemExit as exc:  # gunicorn's master and workers leave this way
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        # As at a normal interpreter exit (hooks clean up with atexit, logging
        # flushes), but then leave for good: never unwind into the caller's
        # code (the CLI's, or a test runner's that would go on in this fork).
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _await_ready(config: Config, read_fd: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    message = _read_report(read_fd, deadline)
    log = config.logfile
    assert log is not None
    if message is None or not message.startswith('ready '):
        reason = message.removeprefix('error ') if message else 'it exited'
        _err(f'the service did not start: {reason}\n{log_tail(log)}')
        return 1
    pid = int(message.split()[1])
    url = health_url(config)
    while time.monotonic() < deadline:
        if not alive(pid):
            _err(f'the service (pid {pid}) exited during start-up\n{log_tail(log)}')
            return 1
        if healthy(url):
            _say(f'wsgi-store started, pid {pid}, {url.rsplit("/", 1)[0]}, log {log}')
            return 0
        time.sleep(0.1)
    _err(f'{url} did not answer within {timeout:g} s; stopping pid {pid}')
    _err(log_tail(log))
    _terminate(pid, config.graceful_timeout + 10.0)
    return 1


def _read_report(fd: int, deadline: float) -> str | None:
    """One line from the daemon, or None on EOF or at the deadline."""
    data = b''
    while b'\n' not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 512)
        if not chunk:
            return None
        data += chunk
    return data.split(b'\n', 1)[0].decode(errors='replace')


def run(config: Config, settings_file: Path | None, pidfile: Path | None) -> int:
    """Serve in the foreground (systemd, containers); SIGTERM ends it."""
    try:
        for warning in check_service(config, pidfile):
            _err(f'warning: {warning}')
    except ServiceError as exc:
        _err(str(exc))
        return 1
    from wsgi_store.ops.service import serve_foreground

    return serve_foreground(config, settings_file, pidfile)


def stop(config: Config, timeout: float | None = None) -> int:
    """SIGTERM, wait for the graceful shutdown, SIGKILL after ``timeout``."""
    path = config.pidfile
    state = probe(path)
    if not state.running:
        if state.exists:
            path.unlink(missing_ok=True)
            _say(f'not running (removed the stale pidfile {path}, pid {state.pid})')
        elif _answers_without_pidfile(config):
            return 1
        else:
            _say(f'not running (no pidfile {path})')
        return 0
    if state.pid is None:
        _err(f'{path} is locked but holds no pid yet; try again')
        return 1
    limit = config.graceful_timeout + 10.0 if timeout is None else timeout
    if not _terminate(state.pid, limit):
        _err(f'pid {state.pid} did not stop within {limit:g} s: killed')
    if not probe(path).running:
        path.unlink(missing_ok=True)
    _say(f'stopped (pid {state.pid})')
    return 0


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``; SIGKILL it and its workers after ``timeout``.

    Returns:
        True if it stopped on its own.
    """
    workers = children(pid)
    kill_all([pid], signal.SIGTERM)
    if _wait_gone([pid, *workers], timeout):
        return True
    kill_all([pid, *workers, *children(pid)], signal.SIGKILL)
    _wait_gone([pid, *workers], 10.0)
    return False


def restart(
    config: Config, settings_file: Path | None = None, timeout: float = START_TIMEOUT
) -> int:
    """Check everything ``start`` would, then ``stop``, then ``start``.

    A mistake in the new settings (a bad tokens file, an unusable store)
    leaves the running service alone.
    """
    try:
        validate(config)
    except ServiceError as exc:
        _err(f'{exc}; the running service was left alone')
        return 1
    code = stop(config)
    return code if code else start(config, settings_file, timeout)


def reload(config: Config) -> int:
    """SIGHUP: gunicorn re-reads its settings and replaces workers gracefully."""
    state = probe(config.pidfile)
    if not state.running or state.pid is None:
        if _answers_without_pidfile(config):
            return 1
        _err(f'not running (pidfile {config.pidfile})')
        return EXIT_RELOAD_NOT_RUNNING
    os.kill(state.pid, signal.SIGHUP)
    _say(f'reloading (sent SIGHUP to pid {state.pid})')
    return 0


def status(config: Config) -> int:
    """LSB status: 0 running, 1 dead with a pidfile, 3 not running."""
    state = probe(config.pidfile)
    if state.running:
        answer = 'answers' if healthy(health_url(config)) else 'does NOT answer'
        _say(f'running, pid {state.pid}; {health_url(config)} {answer}')
        return 0
    if state.exists:
        _say(f'dead: pidfile {config.pidfile} names pid {state.pid}, not running')
        return EXIT_DEAD_WITH_PIDFILE
    if _answers_without_pidfile(config):
        return EXIT_STATUS_UNKNOWN
    _say('not running')
    return EXIT_NOT_RUNNING


def get_pid(config: Config) -> int:
    """Print the pid of the running service (exit 3 when not running)."""
    state = probe(config.pidfile)
    if state.running and state.pid is not None:
        _say(str(state.pid))
        return 0
    if _answers_without_pidfile(config):
        return EXIT_STATUS_UNKNOWN
    _err('not running')
    return EXIT_NOT_RUNNING


def _answers_without_pidfile(config: Config) -> bool:
    """Say so when no pidfile names a running service but the port answers."""
    url = health_url(config)
    if not healthy(url):
        return False
    _err(
        f'no running service recorded in {config.pidfile}, but {url} answers: '
        'it was started with another --pidfile (or by another user or systemd); '
        'give that --pidfile'
    )
    return True
