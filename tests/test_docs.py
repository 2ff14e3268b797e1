"""The documentation's promises point at tests that exist.

Every ``test_file::test_name`` the README or a page under ``docs/`` names (the
Guarantees tables above all) must be a test function in ``tests/test_file.py``:
a renamed or deleted test would otherwise leave a promise that nothing proves.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
REFERENCE = re.compile(r'\b(test_\w+)::(test_\w+)')


def _test_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding='utf-8'))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return names


def _references() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for module, name in REFERENCE.findall(doc.read_text(encoding='utf-8')):
            found.append((doc.relative_to(ROOT).as_posix(), module, name))
    return found


def test_docs_name_some_tests() -> None:
    """The Guarantees are there at all (a lost section would pass the next test)."""
    assert len(_references()) >= 50


@pytest.mark.parametrize(
    ('doc', 'module', 'name'),
    sorted(set(_references())),
    ids=lambda value: str(value),
)
def test_every_named_test_exists(doc: str, module: str, name: str) -> None:
    path = ROOT / 'tests' / f'{module}.py'
    assert path.is_file(), f'{doc} names {module}::{name}, but {path} does not exist'
    assert name in _test_names(path), f'{doc} names {module}::{name}: no such test'


def test_quick_start_is_two_commands() -> None:
    """The brief: one command installs and starts, one runs the whole suite."""
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    section = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    block = section.split('```sh', 1)[1].split('```', 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ['bin/quickstart', 'bin/run-tests']


FRESH = re.compile(r'<!-- test_docs: fresh store -->\n```sh\n(.*?)```', re.S)
PHOTO = bytes(range(256)) * 40  # a stand-in for the examples' photo.jpg


def _fresh_store_blocks() -> list[tuple[str, str]]:
    return [
        (doc.relative_to(ROOT).as_posix(), block)
        for doc in DOCS
        for block in FRESH.findall(doc.read_text(encoding='utf-8'))
    ]


def test_there_are_fresh_store_examples() -> None:
    docs = {doc for doc, _ in _fresh_store_blocks()}
    assert {'README.md', 'docs/api.md'} <= docs


@pytest.mark.e2e
@pytest.mark.parametrize(
    ('doc', 'block'), _fresh_store_blocks(), ids=lambda v: v.splitlines()[0][:40]
)
def test_fresh_store_examples_answer_as_documented(
    tmp_path: Path, doc: str, block: str
) -> None:
    """Each marked shell block, run with bash against a real gunicorn on a fresh
    store, succeeds; where it shows output (``# ...`` lines) it prints exactly
    that; what it downloads is what it uploaded."""
    from tests.servers import start_gunicorn

    work = tmp_path / 'work'
    work.mkdir()
    (work / 'photo.jpg').write_bytes(PHOTO)
    server = start_gunicorn(tmp_path, tmp_path / 'store')
    try:
        script = block.replace('http://127.0.0.1:9000', server.url)
        result = subprocess.run(
            ['bash', '-euo', 'pipefail', '-c', script],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert result.returncode == 0, (doc, result.stderr)
    shown = [line[2:] for line in block.splitlines() if line.startswith('# ')]
    if shown:
        assert result.stdout.splitlines() == shown, doc
    for name in ('copy.jpg', 'trip.jpg'):
        if name in block:
            assert (work / name).read_bytes() == PHOTO, name
