"""From collected samples to the rows of the table, each with its limit and target."""

from __future__ import annotations

from .context import Context
from .results import Row

RSS_LIMIT_MIB = 32.0


def rows(ctx: Context) -> list[Row]:
    """Every row, in the order of the table."""
    st, s = ctx.settings, ctx.samples
    out: list[Row] = []

    def row(
        work: str,
        system: str,
        conns: int | None,
        unit: str,
        key: str,
        limit: str,
        limit_key: str,
        target: float | None = None,
        at_most: bool = False,
    ) -> None:
        out.append(
            Row(
                work,
                system,
                conns,
                unit,
                list(s.get(key, [])),
                limit,
                list(s.get(limit_key, [])),
                target,
                at_most,
                ctx.notes.get(key, ''),
            )
        )

    for c in st.conns:
        busy = 0.9 if c >= 8 else None
        row(
            'GET 1 KiB',
            'store via nginx',
            c,
            'req/s',
            f'get-small/store via nginx/{c}',
            'nginx static',
            f'get-small/nginx static/{c}',
            busy,
        )
        row(
            'GET 1 KiB',
            'store direct (gunicorn)',
            c,
            'req/s',
            f'get-small/store direct/{c}',
            'trivial Falcon app',
            f'get-small/trivial Falcon/{c}',
            0.9,
        )
    for c in st.conns:
        busy = 0.9 if c >= 8 else None
        work = f'GET {st.large_label}'
        row(
            work,
            'store via nginx',
            c,
            'MB/s',
            f'get-large/store via nginx/{c}',
            'nginx static',
            f'get-large/nginx static/{c}',
            busy,
        )
        row(
            work,
            'store direct (gunicorn)',
            c,
            'MB/s',
            f'get-large/store direct/{c}',
            'nginx static',
            f'get-large/nginx static/{c}',
            0.9,
        )
    for c in st.conns:
        row(
            'POST 1 KiB, fsync',
            'store direct',
            c,
            'req/s',
            f'post-durable/store/{c}',
            'raw fsync loop, 1 thread',
            'post-durable/raw',
            1.5 if c == 8 else None,
        )
    # Target 0.5 flushes per upload, against the loop's ~2 per file. Flush
    # requests are only compared when the raw loop shows them at all.
    raw_flushes = s.get('flushes/raw', [])
    kinds = [('writes', 'device write requests', None)]
    if raw_flushes and min(raw_flushes) > 0:
        kinds.insert(0, ('flushes', 'device flushes', 0.25))
    elif raw_flushes:
        for c in st.conns:
            ctx.note(f'writes/store/{c}', 'the raw loop shows no flush requests here')
    for c in st.conns:
        for kind, label, target in kinds:
            if f'{kind}/store/{c}' in s:  # a block-device counter was found
                row(
                    f'{label} per durable POST 1 KiB',
                    'store direct',
                    c,
                    kind,
                    f'{kind}/store/{c}',
                    'raw fsync loop, per file',
                    f'{kind}/raw',
                    target if c == 8 else None,
                    at_most=True,
                )
    for c in st.conns:
        row(
            'POST 1 KiB, no fsync',
            'store direct',
            c,
            'req/s',
            f'post-nondurable/store/{c}',
            'nginx DAV PUT',
            f'post-nondurable/nginx DAV/{c}',
            0.7 if c == 8 else None,
        )
    for c in st.conns:
        row(
            'DELETE 1 KiB',
            'store direct',
            c,
            'req/s',
            f'delete/store/{c}',
            'nginx DAV DELETE',
            f'delete/nginx DAV/{c}',
        )
    for c in st.conns:
        row(
            f'POST {st.large_label}, fsync',
            'store direct',
            c,
            'MB/s',
            f'post-large-fsync/store/{c}',
            'disk write+fsync, 1 file',
            f'post-large-fsync/disk/{c}',
            0.9,
        )
    for c in st.conns:
        row(
            f'POST {st.large_label}, fsync',
            'store via nginx',
            c,
            'MB/s',
            f'post-large-fsync/store via nginx/{c}',
            'disk write+fsync, 1 file',
            f'post-large-fsync/disk/{c}',
            0.9 if c == 1 else None,
        )
    for c in st.conns:
        row(
            f'POST {st.large_label}, no fsync',
            'store direct',
            c,
            'MB/s',
            f'post-large-nofsync/store/{c}',
            'page-cache write, 1 file',
            f'post-large-nofsync/disk/{c}',
        )
    s['rss/limit'] = [RSS_LIMIT_MIB] * len(s.get('rss/upload', []))
    for phase in ('upload', 'download'):
        row(
            f'worker RSS growth, {st.huge_label} {phase}',
            'store direct',
            1,
            'MiB',
            f'rss/{phase}',
            'budget',
            'rss/limit',
            1.0,
            at_most=True,
        )
    crowd = f'{st.preload:,} objects'
    row(
        'GET 1 KiB p50 latency',
        f'store with {crowd}',
        1,
        'ms',
        'latency/big/p50',
        'empty store',
        'latency/empty/p50',
    )
    row(
        'GET 1 KiB p99 latency',
        f'store with {crowd}',
        1,
        'ms',
        'latency/big/p99',
        'empty store',
        'latency/empty/p99',
        1.5,
        at_most=True,
    )
    for work, unit, key, conns in (
        ('S3: POST 1 KiB', 'req/s', 's3-post-small', 8),
        ('S3: GET 1 KiB', 'req/s', 's3-get-small', 8),
        (f'S3: POST {st.s3_big_label}', 'MB/s', 's3-post-big', 1),
        (f'S3: GET {st.s3_big_label}', 'MB/s', 's3-get-big', 1),
    ):
        if f'{key}/store' in s:  # S3 configured and the scenario ran
            ctx.note(f'{key}/store', ctx.notes.get(f'{key}/boto3', ''))
            row(
                work,
                'store on the S3 backend',
                conns,
                unit,
                f'{key}/store',
                'boto3 straight to S3',
                f'{key}/boto3',
                0.8,
            )
    return out
