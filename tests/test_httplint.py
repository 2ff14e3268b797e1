"""httplint (the library behind REDbot) over each kind of answer on each path.

Fails on any note of level ``bad``, and on any ``warn`` not listed in
ACCEPTED_WARNINGS with the reason it is accepted. The three paths are the ones
of test_parity.py (the app, nginx by X-Accel-Redirect, nginx direct reads).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from httplint import HttpRequestLinter, HttpResponseLinter
from httplint.note import levels

import tests
from tests.three_paths import PATHS, Answer, KiB, MiB, ThreePaths, three_paths

pytestmark = pytest.mark.e2e
MISSING = hashlib.sha256(b'never stored').hexdigest()

# Note class -> why it is fine for a content-addressed store.
ACCEPTED_WARNINGS: dict[str, str] = {
    'STORE_PUBLIC_UNNECESSARY': (
        'public reads say "public" on purpose: objects are immutable and the same '
        'for everyone, and it documents that CDNs and shared caches may keep them '
        '(token-protected reads say "private" instead: test_conditional.py)'
    ),
    'STATUS_BAD_REQUEST': '400 is the intended answer to a malformed hash',
    'LOCATION_UNDEFINED': (
        "an upload's 200 names the object's URL in Location, as the seed "
        'contract always did (README); clients read it'
    ),
    'CONTENT_TYPE_MISMATCH': (
        '?filename= types the bytes by the name the client chose; the bytes here '
        'are random, not the PDF/PNG the name says (the store never sniffs)'
    ),
}

# (kind, method, target, headers); {big} {small} {empty} as in test_parity.py.
KINDS: list[tuple[str, str, str, dict[str, str]]] = [
    ('get-empty', 'GET', '/files/{empty}', {}),
    ('get-small', 'GET', '/files/{small}', {}),
    ('get-big', 'GET', '/?file_hash={big}', {}),
    ('head-big', 'HEAD', '/files/{big}', {}),
    ('range-206', 'GET', '/files/{big}', {'Range': 'bytes=0-99'}),
    ('range-416', 'GET', '/files/{big}', {'Range': f'bytes={MiB}-'}),
    ('not-modified-304', 'GET', '/files/{big}', {'If-None-Match': '"{big}"'}),
    ('precondition-412', 'GET', '/files/{big}', {'If-Match': '"0000"'}),
    ('not-found-404', 'GET', f'/files/{MISSING}', {}),
    ('bad-hash-400', 'GET', '/files/xyz', {}),
    ('named-attachment', 'GET', '/files/{big}?filename=r%C3%A9sum%C3%A9.pdf', {}),
    ('named-inline', 'GET', '/files/{small}?filename=a.png&inline=1', {}),
    ('put-200', 'PUT', '/files/{small}', {}),
    ('delete-412', 'DELETE', '/files/{big}', {'If-Match': '"0000"'}),
]


@pytest.fixture(scope='module')
def paths() -> Iterator[ThreePaths]:
    with three_paths() as started:
        yield started


def lint(method: str, target: str, headers: dict[str, str], answer: Answer) -> list:
    """Every note (sub-notes too) httplint makes on this exchange."""
    request = HttpRequestLinter()
    request.process_request_topline(method.encode(), target.encode(), b'HTTP/1.1')
    request.process_headers(
        [(b'Host', b'127.0.0.1')]
        + [(k.encode(), v.encode()) for k, v in headers.items()]
    )
    request.finish_content(True)
    response = HttpResponseLinter(_related=request)
    response.is_head_response = method == 'HEAD'  # Content-Length, no body
    response.process_response_topline(b'HTTP/1.1', str(answer.status).encode(), b'')
    response.process_headers(
        [(k.encode('latin-1'), v.encode('latin-1')) for k, v in answer.headers]
    )
    response.feed_content(answer.body)
    response.finish_content(True)
    notes, todo = [], list(response.notes)
    while todo:
        note = todo.pop()
        notes.append(note)
        todo.extend(note.subnotes)
    return notes


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('kind', KINDS, ids=[k[0] for k in KINDS])
def test_httplint_finds_nothing_bad(paths: ThreePaths, path: str, kind) -> None:
    _, method, target, headers = kind
    by_size = {len(d): h for h, d in paths.objects.items()}
    values = {'big': by_size[MiB], 'small': by_size[KiB], 'empty': by_size[0]}
    target = target.format(**values)
    headers = {k: v.format(**values) for k, v in headers.items()}
    body = paths.objects[values['small']] if method == 'PUT' else None
    answer = paths.request(path, target, method, headers, body)
    notes = lint(method, target, headers, answer)
    bad = [f'{type(n).__name__}: {n.summary}' for n in notes if n.level == levels.BAD]
    warned = [
        f'{type(n).__name__}: {n.summary}'
        for n in notes
        if n.level == levels.WARN and type(n).__name__ not in ACCEPTED_WARNINGS
    ]
    assert not bad, bad
    assert not warned, warned


# -- trap 16: sniffpy (httplint's dependency) installs a top-level `tests` ----
def test_our_tests_package_wins_over_sniffpys() -> None:
    assert Path(tests.__file__).resolve().parent == Path(__file__).resolve().parent


def test_a_namespace_tests_dir_would_be_shadowed(tmp_path: Path) -> None:
    """Why tests/__init__.py exists: a regular ``tests`` package later on
    sys.path (sniffpy's, in site-packages; here a stand-in, so the test does not
    depend on sniffpy's packaging) beats a ``tests`` directory without
    ``__init__.py``; with the file, the project's wins."""
    site = tmp_path / 'site'
    (site / 'tests').mkdir(parents=True)
    (site / 'tests' / '__init__.py').write_text('')  # like sniffpy's wheel
    project = tmp_path / 'project'
    (project / 'tests').mkdir(parents=True)
    (project / 'tests' / 'helper.py').write_text('VALUE = 1\n')
    code = 'import tests.helper; print(tests.helper.VALUE)'

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, '-c', code],
            cwd=project,
            env={**os.environ, 'PYTHONPATH': str(site)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert 'ModuleNotFoundError' in run().stderr  # shadowed
    (project / 'tests' / '__init__.py').write_text('')
    assert run().stdout.strip() == '1'  # the guard
