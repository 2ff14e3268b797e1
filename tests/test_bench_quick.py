"""The benchmark harness runs (``python -m bench --quick``) and writes a table.

No timing is asserted: this only keeps the harness from rotting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

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
