"""schemathesis against a live gunicorn: no 5xx, every answer matches the document.

Bounded: a fixed number of examples per operation and a fixed seed (set
``SCHEMATHESIS_SEED`` to explore others, ``SCHEMATHESIS_MAX_EXAMPLES`` for more
cases), and a hard timeout on the whole run.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.servers import VENV_BIN, start_gunicorn

CHECKS = (
    'not_a_server_error',
    'response_schema_conformance',
    'status_code_conformance',
    'content_type_conformance',
    'response_headers_conformance',
)
RUN_TIMEOUT = 240  # seconds; the run itself takes well under a minute here


@pytest.mark.e2e
def test_schemathesis_finds_nothing(tmp_path):
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=2, threads=4)
    try:
        result = subprocess.run(
            [
                str(VENV_BIN / 'schemathesis'),
                'run',
                server.url + '/openapi.json',
                '--checks',
                ','.join(CHECKS),
                '--max-examples',
                os.environ.get('SCHEMATHESIS_MAX_EXAMPLES', '40'),
                '--seed',
                os.environ.get('SCHEMATHESIS_SEED', '20240601'),
                '--workers',
                '2',
                '--request-timeout',
                '20',
                '--continue-on-failure',
            ],
            cwd=tmp_path,  # its .hypothesis database stays out of the tree
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    finally:
        server.stop()
    output = result.stdout[-20000:] + result.stderr[-5000:]
    assert result.returncode == 0, output
    assert 'passed' in result.stdout, output
    # A failure after the status line (a streamed body) is invisible to the
    # client's checks; the server's log shows it.
    log = server.log.read_text()
    assert 'Traceback' not in log, log[-5000:]
