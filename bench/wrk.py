"""Run wrk with the bench's Lua scripts and parse its one-line report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

LUA = Path(__file__).with_name('lua')
MARK = 'BENCH-RESULT '


class WrkFailed(RuntimeError):
    """wrk exited badly or printed no report."""


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """The totals of one wrk run."""

    requests: int
    duration_us: int
    bytes: int
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    p50_us: int
    p99_us: int
    mean_us: float

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6

    @property
    def ok(self) -> int:
        """Requests answered below 400."""
        return self.requests - self.status

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        """Bytes read per second in MB (10**6), partial responses included."""
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def script(work: Path, *parts: str) -> Path:
    """Concatenate Lua parts (names in bench/lua) plus the report into one file."""
    name = '-'.join(parts) + '.lua'
    target = work / name
    if not target.exists():
        text = '\n'.join((LUA / f'{p}.lua').read_text() for p in (*parts, 'report'))
        target.write_text(text)
    return target


def run(
    url: str,
    conns: int,
    seconds: int,
    lua: Path,
    args: tuple[str, ...] = (),
    threads: int | None = None,
) -> WrkResult:
    """One wrk run of ``seconds`` against ``url`` with ``conns`` connections."""
    threads = threads or min(2, conns)
    argv = [
        'wrk',
        '-t',
        str(threads),
        '-c',
        str(conns),
        '-d',
        f'{seconds}s',
        '--timeout',
        '30s',
        '-s',
        str(lua),
        url,
        '--',
        *args,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            result = WrkResult(**json.loads(line[len(MARK) :]))
            if result.requests == 0 and result.bytes == 0:
                raise WrkFailed(f'wrk got no answer from {url}:\n{proc.stdout}')
            return result
    raise WrkFailed(f'wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}')
