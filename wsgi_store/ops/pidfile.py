"""A pidfile held with a POSIX record lock, and probes of processes by pid.

The lock, not the file's existence, says whether the service runs: the kernel
drops it when the process dies (even by SIGKILL), so a pidfile left behind is
recognisably stale. ``lockf`` locks belong to the process, not to the open
file, so gunicorn's forked workers do not inherit it (``flock`` locks would
be shared with them and outlive a killed master).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_BUSY = (errno.EAGAIN, errno.EACCES)
DIR_NAME = 'wsgi-store'


def default_pidfile(port: int, environ: dict[str, str] | None = None) -> Path:
    """Where ``filestorectl`` keeps the pidfile when none is given.

    One place per user and port, whatever the current directory:
    ``$XDG_RUNTIME_DIR/wsgi-store/PORT.pid`` when that directory exists (a
    systemd login session), else ``$XDG_STATE_HOME/wsgi-store/PORT.pid``
    (``~/.local/state/wsgi-store/PORT.pid``). So ``stop`` and ``status``
    find the service started from any other directory.
    """
    env = os.environ if environ is None else environ
    runtime = env.get('XDG_RUNTIME_DIR', '')
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        base = Path(runtime)
    elif env.get('XDG_STATE_HOME', '').startswith('/'):
        base = Path(env['XDG_STATE_HOME'])
    else:
        home = env.get('HOME') or os.path.expanduser('~')
        base = Path(home if home.startswith('/') else f'/tmp/{os.geteuid()}')
        base = base / '.local' / 'state'
    return base / DIR_NAME / f'{port}.pid'


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and its parents) with mode 0700 when missing."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


class AlreadyLocked(Exception):
    """Another live process holds the pidfile."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f'{path} is held by pid {pid}')
        self.path, self.pid = path, pid


@dataclass(frozen=True)
class PidState:
    """What a pidfile says: the pid written in it and whether its lock is held."""

    exists: bool
    pid: int | None
    running: bool


class PidFile:
    """The service's pidfile: created, locked and written by :meth:`acquire`.

    Args:
        path: absolute path of the pidfile.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._owner: int | None = None

    def acquire(self) -> None:
        """Lock the pidfile and write our pid (mode 0644).

        Raises:
            AlreadyLocked: another live process holds it.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _BUSY:
                    raise AlreadyLocked(self.path, read_pid(self.path)) from None
                raise
            # Someone may have removed the file (as stale) between our open and
            # lock: then we locked an unlinked inode; start over.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f'{os.getpid()}\n'.encode())
        self._fd, self._owner = fd, os.getpid()

    def release(self) -> None:
        """Remove the pidfile, in the process that acquired it only.

        NOTE: gunicorn workers unwind through the code that started the
        arbiter (STYLE.md trap 2); in them this is a no-op.
        """
        if self._fd is None or self._owner != os.getpid():
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = self._owner = None


def read_pid(path: Path) -> int | None:
    """The pid written in ``path``, or None when missing, empty or garbled."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def probe(path: Path) -> PidState:
    """Read a pidfile and test its lock (without keeping it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return PidState(False, None, False)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            return PidState(True, read_pid(path), True)
        fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return PidState(True, read_pid(path), False)


def alive(pid: int) -> bool:
    """True when ``pid`` is a live process (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers), from /proc."""
    try:
        text = Path(f'/proc/{pid}/task/{pid}/children').read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Wait until none of ``pids`` is alive; False if some still are at timeout."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def kill_all(pids: list[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each of ``pids`` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
