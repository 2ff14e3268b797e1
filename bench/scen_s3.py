"""S3 scenarios: the store on the S3 backend beside boto3 straight to the same bucket.

Each pair is measured next to each other (yardstick first): 1 KiB POST and GET at
8 connections (wrk against the store, :mod:`.s3load`'s threads against S3), and
one large POST and GET at one connection (:mod:`.bigclient` against the store, one
multipart upload and one GetObject against S3).
"""

from __future__ import annotations

from . import bigclient, s3load
from .context import Context
from .lab import S3_STORE

SMALL_CONNS = 8
NAME = S3_STORE


def _ready(ctx: Context, key: str) -> s3load.Target | None:
    target = ctx.lab.s3
    if target is None:
        ctx.note(key, 'not run: no S3 server configured')
    return target


def post_small(ctx: Context) -> None:
    """1 KiB POST to the S3-backed store against PutObject from boto3 (req/s)."""
    target = _ready(ctx, 's3-post-small/store')
    if target is None:
        return
    tag = f'{ctx.nonce}s{ctx.round_no}'
    yard = s3load.put_small(target, SMALL_CONNS, ctx.settings.seconds, tag)
    _note_errors(ctx, 's3-post-small/boto3', yard)
    ctx.add('s3-post-small/boto3', yard.rate)
    key = 's3-post-small/store'
    args = ('POST', '/', '1024', f'{tag}w', 'fixed')
    result = ctx.wrk(
        ctx.lab.url(NAME), SMALL_CONNS, ctx.lua('threads', 'upload'), args, key=key
    )
    ctx.add(key, result.rate)


def get_small(ctx: Context) -> None:
    """1 KiB GET from the S3-backed store against GetObject from boto3 (req/s)."""
    target = _ready(ctx, 's3-get-small/store')
    if target is None:
        return
    yard = s3load.get_small(target, SMALL_CONNS, ctx.settings.seconds)
    _note_errors(ctx, 's3-get-small/boto3', yard)
    ctx.add('s3-get-small/boto3', yard.rate)
    if 's3-small' not in ctx.objects:
        ctx.objects['s3-small'] = bigclient.upload_bytes(
            ctx.lab.ports[NAME], b's3-small\n'.ljust(1024, b's')
        )
    key = 's3-get-small/store'
    url = ctx.lab.url(NAME, f'/files/{ctx.objects["s3-small"]}')
    ctx.add(key, ctx.wrk(url, SMALL_CONNS, ctx.lua('report'), key=key).rate)


def post_big(ctx: Context) -> None:
    """One large POST to the S3-backed store against one boto3 multipart upload."""
    target = _ready(ctx, 's3-post-big/store')
    if target is None:
        return
    source = bigclient.make_source(ctx.work / 's3-big.src', ctx.settings.s3_big)
    tag = f'{ctx.nonce}B{ctx.round_no}'
    ctx.add('s3-post-big/boto3', s3load.put_big(target, source, tag))
    ctx.objects['s3-big-yard'] = tag
    rate, hashes = bigclient.upload_many(
        ctx.lab.ports[NAME], '/', source, 1, 1, f'{tag}-store'
    )
    ctx.add('s3-post-big/store', rate)
    ctx.objects['s3-big'] = hashes[0]


def get_big(ctx: Context) -> None:
    """One large GET from the S3-backed store against one GetObject (MB/s)."""
    target = _ready(ctx, 's3-get-big/store')
    if target is None:
        return
    if 's3-big' not in ctx.objects:  # run alone (--only s3-get-big): store it first
        post_big(ctx)
    ctx.add('s3-get-big/boto3', s3load.get_big(target, ctx.objects['s3-big-yard']))
    size = ctx.settings.s3_big
    rate, got = bigclient.timed_download(
        ctx.lab.ports[NAME], f'/files/{ctx.objects["s3-big"]}'
    )
    if got != size:
        ctx.note('s3-get-big/store', f'downloaded {got} of {size} bytes')
    ctx.add('s3-get-big/store', rate)


def _note_errors(ctx: Context, key: str, result: s3load.LoopResult) -> None:
    if result.errors:
        ctx.note(key, f'boto3: {result.errors} failed requests')
