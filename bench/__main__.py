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

from . import (
    facts,
    results,
    s3load,
    scen_read,
    scen_s3,
    scen_write,
    seed,
    settings,
    table,
)
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
    's3-post-small': scen_s3.post_small,
    's3-get-small': scen_s3.get_small,
    's3-post-big': scen_s3.post_big,
    's3-get-big': scen_s3.get_big,
}
S3_SCENARIOS = [name for name in SCENARIOS if name.startswith('s3-')]


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


def _s3_target(names: list[str]) -> tuple[list[str], s3load.Target | None, str]:
    """The scenarios to run, the S3 server when S3 rows are among them, and why not.

    Without S3 settings the S3 rows are left out, with the reason printed: the
    bench is not a test.
    """
    if not set(names) & set(S3_SCENARIOS):
        return names, None, ''
    missing = s3load.missing()
    if missing:
        reason = (
            f'not run: {", ".join(missing)} unset (eval "$(bash '
            'shared/s3/start-s3.sh --export DIR)" sets them)'
        )
        print(f'S3 rows {reason}', file=sys.stderr, flush=True)
        return [n for n in names if n not in S3_SCENARIOS], None, reason
    return names, s3load.Target.from_env(), ''


def _cleanup_s3(target: s3load.Target) -> None:
    try:
        s3load.cleanup(target)
    except Exception as exc:  # a leftover prefix is no reason to fail
        print(f'left objects under {target.prefix}: {exc}', file=sys.stderr)


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
    names, s3, s3_skipped = _s3_target(args.only or list(SCENARIOS))
    lab = Lab(work, big, s3=s3)
    ctx = Context(lab, st)
    try:
        _measure(ctx, names, started + st.budget)
    finally:
        lab.close()
        if s3 is not None:
            _cleanup_s3(s3)
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
        'gunicorn setup': facts.worker_label(lab.workers, lab.threads),
        'load before': load_before,
        'load after': facts.loadavg(),
        'preload': f'{st.preload:,} objects in {big} '
        f'({"cached" if not preload_s else f"built in {preload_s:.0f}s"})',
        'wall time': f'{time.monotonic() - started:.0f}s',
    }
    if s3_skipped:
        meta['S3 rows'] = s3_skipped
    if s3 is not None:
        meta.update(facts.s3_versions())
        meta['S3 server'] = (
            f'{s3.endpoint} bucket {s3.bucket}, parts of {s3load.part_bytes():,} bytes'
        )
    rows = table.rows(ctx)
    path = results.write(
        args.out, f'bench-{st.mode}-{time.strftime("%Y%m%d-%H%M%S")}', rows, meta
    )
    print(results.markdown(rows, meta))
    print(f'written: {path} and {path.with_suffix(".json")}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
