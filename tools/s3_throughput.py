"""Throughput of the S3 backend next to the filesystem backend, in one run.

    set -a; . /tmp/s3.env; set +a        # S3_ENDPOINT_URL, S3_BUCKET, AWS_* keys
    .venv/bin/python tools/s3_throughput.py [--duration 10] [--starts 3]

For each backend it starts gunicorn (``gunicorn.conf.py``, 2 workers x 8 threads
by default) on a free loopback port and measures:

* 1 KiB GET and 1 KiB POST (a distinct body per request, so deduplication cannot
  flatter the numbers) at 8 connections with wrk, over ``--starts`` server starts
  (gunicorn pins each keep-alive connection to one worker, so one start can be
  lucky or unlucky); the table shows the median and the range;
* a 100 MiB POST and GET with curl, one connection, fresh random content each
  time; the median of ``--big-runs``.

The filesystem store is in a temporary directory on the same disk; the S3 store
uses its own prefix ``wsgi-store-bench/...``, removed at the end. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3env
from tests.servers import Server, start_gunicorn

MiB = 1 << 20
WRK = shutil.which('wrk') or '/usr/bin/wrk'
CURL = shutil.which('curl') or '/usr/bin/curl'
NEEDED = ('S3_ENDPOINT_URL', 'S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY')

# wrk runs one Lua state per thread: setup() numbers them, so bodies never repeat.
POST_LUA = """\
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set('tid', threads)
end
function init(args)
  counter = 0
  pad = string.rep('x', {size})
  headers = {{['Content-Type'] = 'application/octet-stream'}}
end
function request()
  counter = counter + 1
  local name = string.format('{nonce}-%d-%d\\n', tid, counter)
  return wrk.format('POST', '/', headers, name .. string.sub(pad, #name + 1))
end
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=int, default=10, help='wrk seconds')
    parser.add_argument('--connections', type=int, default=8)
    parser.add_argument('--wrk-threads', type=int, default=2)
    parser.add_argument('--starts', type=int, default=3, help='server starts')
    parser.add_argument('--small', type=int, default=1024, help='small body bytes')
    parser.add_argument('--big', type=int, default=100, help='big body MiB')
    parser.add_argument('--big-runs', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=8)
    parser.add_argument('--workdir', type=Path, help='default: a fresh temp dir')
    return parser.parse_args(argv)


def run(cmd: list[str], timeout: float) -> str:
    """Run a command to completion (bounded); its stdout, or exit on failure."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f'{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}')
    return done.stdout


def wrk(args: argparse.Namespace, url: str, script: Path | None = None) -> float:
    """Successful requests per second of one wrk run (errors are fatal)."""
    cmd = [WRK, f'-t{args.wrk_threads}', f'-c{args.connections}']
    cmd += [f'-d{args.duration}s', '--timeout', '10s']
    if script is not None:
        cmd += ['-s', str(script)]
    out = run([*cmd, url], timeout=args.duration + 60)
    rate = re.search(r'Requests/sec:\s+([\d.]+)', out)
    if rate is None:
        sys.exit(f'no rate in the wrk output:\n{out}')
    bad = re.search(r'(Non-2xx or 3xx responses|Socket errors):.*', out)
    if bad:
        sys.exit(f'wrk saw errors against {url}: {bad.group(0)}')
    return float(rate.group(1))


def curl(url: str, *extra: str) -> tuple[int, float, float]:
    """(status, seconds, bytes moved) of one curl transfer."""
    fmt = '%{http_code} %{time_total} %{size_upload} %{size_download}'
    out = run([CURL, '-sS', '-o', '/dev/null', '-w', fmt, *extra, url], 600)
    status, seconds, up, down = out.split()
    return int(status), float(seconds), float(up) + float(down)


def post_file(url: str, path: Path) -> None:
    status, _, _ = curl(
        url + '/', '-H', 'Expect:', '-H', 'Content-Type: application/octet-stream',
        '--data-binary', f'@{path}',
    )  # fmt: skip
    if status != 200:
        sys.exit(f'upload of {path} to {url} answered {status}')


def big_transfers(
    args: argparse.Namespace, url: str, work: Path
) -> tuple[float, float]:
    """Median MB/s (10**6 bytes) of the big POST and of the big GET."""
    ups, downs = [], []
    body = work / 'big.bin'
    for _ in range(args.big_runs):
        data = os.urandom(args.big * MiB)  # fresh content: a real write each time
        body.write_bytes(data)
        status, seconds, moved = curl(
            url + '/', '-H', 'Expect:', '-H', 'Content-Type: application/octet-stream',
            '--data-binary', f'@{body}',
        )  # fmt: skip
        assert status == 200, status
        ups.append(moved / seconds / 1e6)
        digest = _sha256(data)
        status, seconds, moved = curl(f'{url}/files/{digest}')
        assert status == 200 and moved == len(data), (status, moved)
        downs.append(moved / seconds / 1e6)
    body.unlink()
    return statistics.median(ups), statistics.median(downs)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_rates(
    args: argparse.Namespace, start: Callable[[], Server], work: Path
) -> tuple[list[float], list[float]]:
    """GET and POST req/s of the small body, one value per server start."""
    script = work / 'post.lua'
    gets, posts = [], []
    for number in range(args.starts):
        server = start()
        try:
            small = work / 'small.bin'
            small.write_bytes(os.urandom(args.small))
            post_file(server.url, small)
            digest = _sha256(small.read_bytes())
            gets.append(wrk(args, f'{server.url}/files/{digest}'))
            nonce = f'{secrets.token_hex(6)}-{number}'
            script.write_text(POST_LUA.format(size=args.small, nonce=nonce))
            posts.append(wrk(args, server.url + '/', script))
        finally:
            server.stop()
    return gets, posts


def measure(args: argparse.Namespace, work: Path, **settings: object) -> dict:
    """Every measurement for one backend (``settings``: WSGI_STORE_* values)."""
    store = work / 'store'
    common = {'workers': args.workers, 'threads': args.threads, 'log_level': 'WARNING'}

    def start() -> Server:
        return start_gunicorn(work, store, timeout=60, **common, **settings)

    gets, posts = small_rates(args, start, work)
    server = start()
    try:
        up, down = big_transfers(args, server.url, work)
    finally:
        server.stop()
    return {'get': gets, 'post': posts, 'up': up, 'down': down}


def s3_settings(prefix: str) -> dict[str, object]:
    return {
        'backend': 's3',
        's3_endpoint_url': os.environ['S3_ENDPOINT_URL'],
        's3_bucket': os.environ['S3_BUCKET'],
        's3_region': os.environ.get('AWS_DEFAULT_REGION', 'us-east-1'),
        's3_prefix': prefix,
    }


def spread(values: list[float]) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f'{middle:,.0f}'
    return f'{middle:,.0f} ({min(values):,.0f}-{max(values):,.0f})'


def table(args: argparse.Namespace, fs: dict, s3: dict) -> str:
    small = f'{args.small} B' if args.small != 1024 else '1 KiB'
    conns = f'{args.connections} connections'
    rows = [
        (f'{small} GET, {conns} (req/s)', fs['get'], s3['get']),
        (f'{small} POST, distinct bodies, {conns} (req/s)', fs['post'], s3['post']),
        (f'{args.big} MiB POST, 1 connection (MB/s)', [fs['up']], [s3['up']]),
        (f'{args.big} MiB GET, 1 connection (MB/s)', [fs['down']], [s3['down']]),
    ]
    lines = ['| measurement | fs | s3 | s3/fs |', '|---|---:|---:|---:|']
    for name, a, b in rows:
        ratio = statistics.median(b) / statistics.median(a)
        lines.append(f'| {name} | {spread(a)} | {spread(b)} | {ratio:.2f} |')
    return '\n'.join(lines)


def describe(args: argparse.Namespace) -> str:
    return (
        f'gunicorn gthread {args.workers}x{args.threads}, wrk -t{args.wrk_threads} '
        f'-c{args.connections} -d{args.duration}s, {args.starts} server start(s) '
        f'per backend (median (min-max)); big bodies: curl, median of '
        f'{args.big_runs}; S3 at {os.environ["S3_ENDPOINT_URL"]}; '
        f'{os.cpu_count()} CPUs shared by client, server and object store.'
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        sys.exit(f'set {", ".join(missing)} (e.g. set -a; . /tmp/s3.env; set +a)')
    work = args.workdir or Path(tempfile.mkdtemp(prefix='wsgi-store-s3bench-'))
    prefix = f'wsgi-store-bench/{time.strftime("%Y%m%dT%H%M%S")}-{secrets.token_hex(3)}'
    try:
        (work / 'fs').mkdir(parents=True, exist_ok=True)
        (work / 's3').mkdir(parents=True, exist_ok=True)
        fs = measure(args, work / 'fs')
        s3 = measure(args, work / 's3', **s3_settings(prefix))
    finally:
        s3env.cleanup(prefix)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(describe(args) + '\n')
    print(table(args, fs, s3))
    return 0


if __name__ == '__main__':
    sys.exit(main())
