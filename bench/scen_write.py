"""Write scenarios: 1 KiB uploads (durable and not), deletes, large uploads, RSS."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from . import bigclient, diskstats, rawdisk, seed
from .context import Context
from .procs import rss_kib

HEAVY = 1 << 30  # bytes per sample above which a cell runs heavy_rounds times only
# First guesses of delete rates (per second), replaced by what was measured.
_DELETE_GUESS = {'store': 3000.0, 'nginx DAV': 8000.0}
_delete_rate: dict[str, float] = {}


def post_durable(ctx: Context) -> None:
    """1 KiB POST with fsync against the single-thread fsync loop (files/s).

    Also the device flushes per acknowledged upload (and per file of the loop),
    counted on the disk under the work directory: device-wide, so anything else
    flushing that disk meanwhile (other tests, logs) inflates them.
    """
    counter = diskstats.counter_for(ctx.work)
    if counter is None:
        ctx.note('post-durable/raw', 'no block-device counter for the work directory')
    before = counter.read() if counter else (0, 0)
    rate, files = rawdisk.durable_loop(
        ctx.work / 'raw-loop', float(ctx.settings.seconds)
    )
    ctx.add('post-durable/raw', rate)
    if counter:
        _add_per(ctx, 'raw', counter.read(), before, files)
    lua = ctx.lua('threads', 'upload')
    for conns in ctx.settings.conns:
        key = f'post-durable/store/{conns}'
        args = ('POST', '/', '1024', f'{ctx.nonce}d{ctx.round_no}c{conns}', 'fixed')
        before = counter.read() if counter else (0, 0)
        result = ctx.wrk(ctx.lab.url('store'), conns, lua, args, key=key)
        ctx.add(key, result.rate)
        if counter:
            _add_per(ctx, f'store/{conns}', counter.read(), before, result.ok)
            for kind in ('flushes', 'writes'):
                ctx.note(f'{kind}/store/{conns}', f'{counter.stat}: device-wide, noisy')


def _add_per(
    ctx: Context, key: str, after: tuple[int, int], before: tuple[int, int], n: int
) -> None:
    """Device flushes and write requests per file (or acknowledged upload)."""
    ctx.add(f'flushes/{key}', (after[0] - before[0]) / max(n, 1))
    ctx.add(f'writes/{key}', (after[1] - before[1]) / max(n, 1))


def post_nondurable(ctx: Context) -> None:
    """1 KiB POST without fsync against nginx WebDAV PUT (req/s)."""
    lua = ctx.lua('threads', 'upload')
    for conns in ctx.settings.conns:
        tag = f'{ctx.nonce}n{ctx.round_no}c{conns}'
        key = f'post-nondurable/nginx DAV/{conns}'
        args = ('PUT', '/dav/put/', '1024', tag, 'name')
        ctx.add(key, ctx.wrk(ctx.lab.url('dav'), conns, lua, args, key=key).rate)
        key = f'post-nondurable/store/{conns}'
        args = ('POST', '/', '1024', tag, 'fixed')
        ctx.add(
            key, ctx.wrk(ctx.lab.url('store-nofsync'), conns, lua, args, key=key).rate
        )
    os.sync()  # write-back of this must not land in the next measurement


def deletes(ctx: Context) -> None:
    """DELETE of existing 1 KiB objects: the store against nginx WebDAV (req/s)."""
    lua = ctx.lua('threads', 'paths')
    for conns in ctx.settings.conns:
        for system in ('nginx DAV', 'store'):
            key = f'delete/{system}/{conns}'
            rate = _delete_rate.get(key, _DELETE_GUESS[system])
            count = int(rate * ctx.settings.seconds * 1.5) + 500
            tag = f'{ctx.nonce}x{ctx.round_no}c{conns}'
            if system == 'store':
                paths = [
                    f'/files/{h}'
                    for h in seed.put_many(ctx.lab.store_dir('store'), count, 1024, tag)
                ]
                url = ctx.lab.url('store')
            else:
                paths = seed.dav_files(ctx.lab.dav_root, count, 1024, tag)
                url = ctx.lab.url('dav')
            listing = ctx.work / f'delete-{system[0]}-{conns}.txt'
            listing.write_text('\n'.join(paths) + '\n')
            os.sync()
            threads = str(min(2, conns))
            result = ctx.wrk(url, conns, lua, ('once', threads, str(listing), 'DELETE'))
            if result.ok >= count:
                ctx.note(key, 'ran out of objects: a lower bound')
            # Size the next batch from this run (double it if this one ran out).
            _delete_rate[key] = result.rate * (2 if result.ok >= count else 1)
            ctx.add(key, result.rate)


def _remove(root: Path, hashes: list[str]) -> None:
    for hex_hash in hashes:
        (root / hex_hash[:2] / hex_hash).unlink(missing_ok=True)


def _large_pair(ctx: Context, conns: int, count: int, fsync: bool) -> None:
    """One sample of the large-upload pair: the disk, then the store."""
    st = ctx.settings
    mode, name = ('fsync', 'store') if fsync else ('nofsync', 'store-nofsync')
    source = bigclient.make_source(ctx.work / 'large.src', st.large)
    ctx.add(
        f'post-large-{mode}/disk/{conns}',
        rawdisk.write_file(ctx.work / 'raw-big', st.large, fsync),
    )
    os.sync()
    tag = f'{ctx.nonce}L{ctx.round_no}{mode}{conns}'
    rate, hashes = bigclient.upload_many(
        ctx.lab.ports[name], '/', source, conns, count, tag
    )
    ctx.add(f'post-large-{mode}/store/{conns}', rate)
    _remove(ctx.lab.store_dir(name), hashes)
    os.sync()
    if fsync:  # the same through the generated nginx site (its upstream: 'store')
        rate, hashes = bigclient.upload_many(
            ctx.lab.ports['site'], '/', source, conns, count, f'{tag}n'
        )
        ctx.add(f'post-large-fsync/store via nginx/{conns}', rate)
        _remove(ctx.lab.store_dir('store'), hashes)
        os.sync()


def _is_heavy(ctx: Context, conns: int) -> bool:
    return max(2, conns) * ctx.settings.large > HEAVY


def upload_large(ctx: Context) -> None:
    """Large POST (fsync on and off) against disk write(+fsync) of one file (MB/s).

    Cells moving over ``HEAVY`` bytes per sample wait for :func:`upload_heavy`.
    """
    for conns in ctx.settings.conns:
        if not _is_heavy(ctx, conns):
            for fsync in (True, False):
                _large_pair(ctx, conns, max(2, conns), fsync)


def upload_heavy(ctx: Context, deadline: float) -> None:
    """The heavy large-upload cells, once, if they fit before ``deadline``.

    The time they need is estimated from the rates already measured.
    """
    st = ctx.settings
    for conns in [c for c in st.conns if _is_heavy(ctx, c)]:
        for fsync in (True, False):
            mode = 'fsync' if fsync else 'nofsync'
            key = f'post-large-{mode}/store/{conns}'
            prefix = f'post-large-{mode}/store/'
            seen = [
                v for k, vs in ctx.samples.items() if k.startswith(prefix) for v in vs
            ]
            rate = statistics.median(seen) if seen else 200.0
            passes = 2 if fsync else 1  # fsync: direct and through nginx
            need = passes * max(2, conns) * st.large / 1e6 / rate * 1.5 + 5
            if time.monotonic() + need > deadline:
                ctx.note(key, f'not run: ~{need:.0f}s would pass the time budget')
                continue
            _large_pair(ctx, conns, max(2, conns), fsync)
            ctx.note(key, f'{max(2, conns)} x {st.large_label} per sample: once')


def _worker_rss(ctx: Context) -> dict[int, int]:
    return {pid: rss_kib(pid) for pid in ctx.lab.gunicorns['store'].children()}


def _growth(before: dict[int, int], after: dict[int, int]) -> float:
    """The largest RSS growth (MiB) of a worker present at both points."""
    common = before.keys() & after.keys()
    return max((after[p] - before[p] for p in common), default=0) / 1024


def rss(ctx: Context) -> None:
    """Worker RSS growth (MiB, the largest of the workers) over a huge up/download."""
    st = ctx.settings
    source = bigclient.make_source(ctx.work / 'huge.src', st.huge)
    port = ctx.lab.ports['store']
    before = _worker_rss(ctx)
    hex_hash = bigclient.upload(
        port, '/', source, f'{ctx.nonce}H{ctx.round_no}\n'.encode()
    )
    after_up = _worker_rss(ctx)
    got = bigclient.download(port, f'/files/{hex_hash}')
    after_down = _worker_rss(ctx)
    if got != st.huge:
        ctx.note('rss/download', f'downloaded {got} of {st.huge} bytes')
    if not before.keys() == after_up.keys() == after_down.keys():
        ctx.note('rss/upload', 'a worker was replaced during the transfer')
    ctx.add('rss/upload', _growth(before, after_up))
    ctx.add('rss/download', _growth(after_up, after_down))
    ctx.add('rss/total', _growth(before, after_down))
    _remove(ctx.lab.store_dir('store'), [hex_hash])
