"""Child processes of the bench: start, wait until they answer, always stop them.

Every child runs in its own session (process group) so that stopping it also
stops the workers it forked: SIGTERM to the group, then SIGKILL after a
deadline. Only the groups this module started are ever signalled.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class ChildFailed(RuntimeError):
    """A child process exited early or never answered."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


class Child:
    """One started process (and its process group), logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with open(log, 'ab') as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        """PIDs of the direct children (gunicorn or nginx workers)."""
        path = Path(f'/proc/{self.pid}/task/{self.pid}/children')
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def tail(self, lines: int = 20) -> str:
        try:
            return '\n'.join(self.log.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''

    def wait_http(
        self, port: int, path: str = '/healthz', timeout: float = 30.0
    ) -> None:
        """Poll ``GET path`` until any HTTP answer < 500, within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChildFailed(
                    f'{self.name} exited with {self.proc.returncode}:\n{self.tail()}'
                )
            if http_status(port, path) not in (None, 502, 503, 504):
                return
            time.sleep(0.05)
        raise ChildFailed(
            f'{self.name} did not answer within {timeout}s:\n{self.tail()}'
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL it."""
        if self.proc.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # Workers may outlive a master that was killed: the group goes too.
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path`` on 127.0.0.1:port, or None if it cannot connect."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.request('GET', path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Children:
    """A stack of children stopped in reverse order, whatever happens."""

    def __init__(self) -> None:
        self._started: list[Child] = []

    def add(self, child: Child) -> Child:
        self._started.append(child)
        return child

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
