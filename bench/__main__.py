"""``python -m bench [--quick]``: run the benchmark, print and save the table."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import facts, results, scen_read, scen_write, seed, settings, table
from .context import Context
from .lab import NGINX, Lab

RESULTS = Path(__file__).resolve().parent / 'results'
SCENARIOS: dict[str, Callable[[Context], None]] = {
    'get-small': scen_read.get_small,
    'get-large': scen_read.get_large,
    'latency': scen_read.latency,
    'post-durable': scen_write.post_durable,
    'post-nondurable': scen_write.post_nondurable,
    'delete': scen_write.deletes,
    'post-large': scen_write.upload_large,
    'rss': scen_write.rss,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m bench', description=__doc__)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='every scenario once for about a second (the test suite)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=RESULTS,
        help='results directory (default: bench/results)',
    )
    parser.add_argument(
        '--cache',
        type=Path,
        default=Path(
            os.environ.get(
                'WSGI_STORE_BENCH_CACHE', Path.home() / '.cache' / 'wsgi-store-bench'
            )
        ),
        help='where the preloaded store is kept between runs',
    )
    parser.add_argument('--rounds', type=int, help='override the number of rounds')
    parser.add_argument('--seconds', type=int, help='override one wrk run (s)')
    parser.add_argument(
        '--only', nargs='+', choices=sorted(SCENARIOS), help='run only these scenarios'
    )
    parser.add_argument(
        '--budget', type=float, help='seconds after which heavy cells are skipped'
    )
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks


def _measure(ctx: Context, names: list[str], deadline: float) -> None:
    lab = ctx.lab
    lab.start_nginx()
    scen_read.prepare(ctx)
    for round_no in range(ctx.settings.rounds):
        ctx.round_no = round_no
        lab.start_gunicorns(round_no)
        try:
            scen_read.warm(ctx)
            for name in names:
                started = time.monotonic()
                SCENARIOS[name](ctx)
                took = time.monotonic() - started
                print(
                    f'round {round_no + 1}: {name} in {took:.1f}s',
                    file=sys.stderr,
                    flush=True,
                )
            if round_no + 1 == ctx.settings.rounds and 'post-large' in names:
                # The cells too heavy to repeat: once, at the end, if time allows.
                scen_write.upload_heavy(ctx, deadline)
        finally:
            lab.stop_gunicorns()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    st = (settings.quick if args.quick else settings.full)(args.cache)
    st = dataclasses.replace(
        st,
        rounds=args.rounds or st.rounds,
        seconds=args.seconds or st.seconds,
        budget=args.budget or st.budget,
    )
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started, load_before = time.monotonic(), facts.loadavg()
    big = st.cache / f'preload-{st.preload}'
    preload_s = seed.preload(big, st.preload)
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-bench-'))
    lab = Lab(work, big)
    ctx = Context(lab, st)
    try:
        _measure(ctx, args.only or list(SCENARIOS), started + st.budget)
    finally:
        lab.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta: dict[str, Any] = {
        'mode': st.mode,
        'rounds': st.rounds,
        'seconds per wrk run': st.seconds,
        'command': 'python -m bench' + (' --quick' if args.quick else ''),
        'date': time.strftime('%Y-%m-%d %H:%M:%S %z'),
        **facts.versions(NGINX),
        'nginx site': 'wsgi_store.ops.nginx.site_config as shipped (access log on)',
        'gunicorn setup': f'gthread, {lab.workers} workers x {lab.threads} threads',
        'load before': load_before,
        'load after': facts.loadavg(),
        'preload': f'{st.preload:,} objects in {big} '
        f'({"cached" if not preload_s else f"built in {preload_s:.0f}s"})',
        'wall time': f'{time.monotonic() - started:.0f}s',
    }
    rows = table.rows(ctx)
    path = results.write(
        args.out, f'bench-{st.mode}-{time.strftime("%Y%m%d-%H%M%S")}', rows, meta
    )
    print(results.markdown(rows, meta))
    print(f'written: {path} and {path.with_suffix(".json")}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
