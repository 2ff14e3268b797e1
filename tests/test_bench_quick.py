"""The benchmark harness runs (``python -m bench --quick``) and writes a table.

No timing is asserted: this only keeps the harness from rotting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
S3_WORKS = ('S3: POST 1 KiB', 'S3: GET 1 KiB', 'S3: POST 20 MiB', 'S3: GET 20 MiB')

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (
            shutil.which('wrk')
            and (shutil.which('nginx') or Path('/usr/sbin/nginx').exists())
        ),
        reason='the bench needs wrk and nginx (Debian packages wrk, nginx)',
    ),
]


def test_quick_bench_writes_a_well_formed_table(tmp_path: Path) -> None:
    from tests import s3env

    # The S3 rows are part of --quick when S3 is configured (always under CI=true).
    with_s3 = all(os.environ.get(name) for name in s3env.REQUIRED)
    if s3env.IN_CI and not with_s3:
        s3env.require_s3()  # fails: CI measures the S3 rows too
    out = tmp_path / 'results'
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'bench',
            '--quick',
            '--out',
            str(out),
            '--cache',
            str(tmp_path / 'cache'),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    doc = json.loads((out / 'latest.json').read_text())
    assert doc['meta']['mode'] == 'quick'
    for key in ('python', 'falcon', 'gunicorn', 'nginx', 'wrk', 'load before'):
        assert doc['meta'][key]
    assert doc['meta']['gunicorn setup'].startswith(
        'wsgi_store.ops.workers.StoreWorker, 2 workers x 8 threads'
    )
    works = {row['work'] for row in doc['rows']}
    for prefix in (
        'GET 1 KiB',
        'POST 1 KiB, fsync',
        'POST 1 KiB, no fsync',
        'DELETE 1 KiB',
        'worker RSS growth',
        'GET 1 KiB p99 latency',
    ):
        assert any(work.startswith(prefix) for work in works), prefix
    if with_s3:
        assert works >= set(S3_WORKS)
        for row in doc['rows']:
            if row['work'] in S3_WORKS:
                assert row['limit'] == 'boto3 straight to S3', row
                assert row['target'] == 0.8, row
        assert doc['meta']['boto3']
        assert 'S3 rows' not in doc['meta']
    else:
        assert not works & set(S3_WORKS)
        assert doc['meta']['S3 rows'].startswith('not run: ')
    for row in doc['rows']:
        assert row['samples'], row
        assert row['limit_samples'], row
        assert all(
            isinstance(x, (int, float)) for x in row['samples'] + row['limit_samples']
        )
        assert row['ratio'] is not None, row

    table = (out / 'latest.md').read_text()
    assert table.count('\n|') >= len(doc['rows']) + 2
    assert '| work | system | conns |' in table
    assert '| ratio |' in table


def test_s3_rows_are_left_out_with_a_reason_without_s3_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.__main__ import S3_SCENARIOS, SCENARIOS, _s3_target

    monkeypatch.delenv('S3_BUCKET', raising=False)
    names, target, reason = _s3_target(list(SCENARIOS))

    assert target is None
    assert not set(names) & set(S3_SCENARIOS)
    assert 'get-small' in names
    assert reason.startswith('not run: S3_BUCKET unset')
    assert 'S3 rows not run: S3_BUCKET unset' in capsys.readouterr().err


def test_s3_rows_run_when_s3_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.__main__ import S3_SCENARIOS, _s3_target

    for name in ('S3_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.setenv(name, os.environ.get(name) or 'x')
    monkeypatch.setenv('S3_BUCKET', 'some-bucket')
    names, target, reason = _s3_target(['get-small', *S3_SCENARIOS])

    assert names == ['get-small', *S3_SCENARIOS]
    assert target is not None and target.bucket == 'some-bucket'
    assert target.store_env()['WSGI_STORE_BACKEND'] == 's3'
    assert target.store_env()['WSGI_STORE_S3_PREFIX'] == f'{target.prefix}store'
    assert reason == ''
