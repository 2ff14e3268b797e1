"""Read scenarios: 1 KiB and large GETs, and latency against a crowded store."""

from __future__ import annotations

from . import seed
from .context import Context
from .procs import http_status

GET_SYSTEMS = ('store direct', 'trivial Falcon', 'store via nginx', 'nginx static')


def prepare(ctx: Context) -> None:
    """Seed the objects the read scenarios fetch (once per run)."""
    store = ctx.lab.store_dir('store')
    ctx.objects['small'] = seed.put(store, b's' * 1024)
    ctx.objects['large'] = seed.put(store, b'L' * ctx.settings.large)
    targets = [
        seed.put(ctx.lab.store_dir(name), f'target-{i}\n'.encode().ljust(1024))
        for name in ('empty', 'big')
        for i in range(ctx.settings.targets)
    ]
    paths = '\n'.join(f'/files/{h}' for h in targets[: ctx.settings.targets])
    (ctx.work / 'targets.txt').write_text(paths + '\n')


def _urls(ctx: Context, hex_hash: str) -> dict[str, str]:
    lab = ctx.lab
    return {
        'store direct': lab.url('store', f'/files/{hex_hash}'),
        'trivial Falcon': lab.url('trivial', f'/files/{hex_hash}'),
        'store via nginx': lab.url('site', f'/files/{hex_hash}'),
        'nginx static': lab.url('static', f'/static/{hex_hash[:2]}/{hex_hash}'),
    }


def warm(ctx: Context) -> None:
    """A few requests to every fresh gunicorn, so no run pays for a cold start."""
    hex_hash = ctx.objects['small']
    for name in ('store', 'store-nofsync', 'trivial', 'empty', 'big'):
        for _ in range(20):
            http_status(ctx.lab.ports[name], f'/files/{hex_hash}')


def get_small(ctx: Context) -> None:
    """1 KiB GET: req/s of every system at every concurrency."""
    urls = _urls(ctx, ctx.objects['small'])
    lua = ctx.lua('report')
    for conns in ctx.settings.conns:
        for system in GET_SYSTEMS:
            key = f'get-small/{system}/{conns}'
            ctx.add(key, ctx.wrk(urls[system], conns, lua, key=key).rate)


def get_large(ctx: Context) -> None:
    """Large GET: MB/s read (partial responses count: wrk counts bytes read)."""
    urls = _urls(ctx, ctx.objects['large'])
    lua = ctx.lua('report')
    for conns in ctx.settings.conns:
        for system in ('store direct', 'store via nginx', 'nginx static'):
            key = f'get-large/{system}/{conns}'
            ctx.add(key, ctx.wrk(urls[system], conns, lua, key=key).mb_per_s)


def latency(ctx: Context) -> None:
    """1 KiB GET at one connection over many objects: p50 and p99 in ms."""
    lua = ctx.lua('threads', 'paths')
    args = ('cycle', '1', str(ctx.work / 'targets.txt'))
    for name in ('empty', 'big'):
        key = f'latency/{name}'
        result = ctx.wrk(ctx.lab.url(name, '/'), 1, lua, args, key=key)
        ctx.add(f'{key}/p50', result.p50_us / 1000)
        ctx.add(f'{key}/p99', result.p99_us / 1000)
