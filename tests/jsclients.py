"""Running the npm clients in tests/js/ (tus-js-client, Uppy) from pytest.

``bin/run-tests`` installs Debian's nodejs and chromium and runs ``npm ci``;
here a missing piece skips locally and fails under ``CI=true`` with the reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.servers import IN_CI, require_binary

JS_DIR = Path(__file__).resolve().parent / 'js'
MODULES = JS_DIR / 'node_modules'


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail under CI=true, when ``condition`` is false."""
    if condition:
        return
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def node_modules(*packages: str) -> Path:
    """tests/js/node_modules, checked to hold ``packages``."""
    for package in packages:
        need(
            (MODULES / package / 'package.json').is_file(),
            f'{package} is missing: run npm ci --prefix tests/js (bin/run-tests does)',
        )
    return MODULES


def run_node(script: str, options: dict, timeout: float = 150) -> list[dict]:
    """Run ``tests/js/SCRIPT`` with JSON options; its JSON-line events."""
    node = require_binary('node', 'nodejs')
    node_modules('tus-js-client')
    proc = subprocess.run(
        [node, str(JS_DIR / script), json.dumps(options)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if not events:
        raise AssertionError(
            f'{script} printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}'
        )
    return events


def last(events: list[dict], kind: str) -> dict:
    """The last event of ``kind``; fails with all the events when there is none."""
    found = [e for e in events if e['event'] == kind]
    assert found, f'no {kind!r} event in {events}'
    return found[-1]
