"""Migrations between the filesystem and S3 backends (S3 from tests/s3env.py)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import s3env
from tests.servers import ctl_env, filestorectl
from wsgi_store.backends.base import Backend
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.backends.s3 import S3Backend
from wsgi_store.config import Config
from wsgi_store.errors import StoreMismatch
from wsgi_store.maintenance.migrate import (
    MigrateError,
    MigrateSummary,
    migrate,
    open_source,
)

s3mark = pytest.mark.s3

MiB = 1 << 20
BODIES = [b'', b'a', os.urandom(1000), os.urandom(MiB), os.urandom(6 * MiB)]


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from s3env.prefix_fixture(request)


@pytest.fixture
def s3(prefix: str) -> Iterator[S3Backend]:
    store = S3Backend.from_config(s3env.s3_config(prefix, s3_part_bytes=5 * MiB))
    yield store
    store.close()


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemBackend:
    return FilesystemBackend(tmp_path / 'store', 'sha256', fsync=False)


def fill(backend: Backend) -> list[str]:
    return sorted(backend.put(io.BytesIO(body)).hash for body in BODIES)


def read(backend: Backend, hex_hash: str) -> bytes:
    with backend.open(hex_hash) as f:
        return f.read()


def assert_same(source: Backend, target: Backend) -> None:
    hashes = list(source.iter_hashes())
    assert list(target.iter_hashes()) == hashes
    for hex_hash in hashes:
        assert read(target, hex_hash) == read(source, hex_hash)


@s3mark
@pytest.mark.parametrize('direction', ['fs-to-s3', 's3-to-fs'])
def test_migrate_and_rerun(
    fs: FilesystemBackend, s3: S3Backend, direction: str
) -> None:
    source, target = (fs, s3) if direction == 'fs-to-s3' else (s3, fs)
    hashes = fill(source)
    target.put(io.BytesIO(BODIES[2]))  # already there: skipped
    summary = migrate(source, target, progress=False)
    assert (summary.copied, summary.skipped, summary.failed) == (4, 1, 0)
    assert summary.ok
    assert list(target.iter_hashes()) == hashes
    assert_same(source, target)
    again = migrate(source, target, progress=False)
    assert (again.copied, again.skipped, again.failed) == (0, 5, 0)


@s3mark
def test_corrupt_fs_object_is_reported_not_copied(
    fs: FilesystemBackend, s3: S3Backend
) -> None:
    hashes = fill(fs)
    bad = hashes[1]
    Path(fs.path_for(bad)).write_bytes(b'bit rot')
    summary = migrate(fs, s3, progress=False)
    assert (summary.copied, summary.failed) == (4, 1)
    assert 'corrupt' in summary.failures[bad]
    assert not s3.exists(bad)
    assert s3env.list_uploads(s3.prefix) == []
    assert len(s3env.list_keys(s3.prefix)) == 5  # 4 objects + metadata


@s3mark
def test_corrupt_s3_object_is_reported_not_copied(
    fs: FilesystemBackend, s3: S3Backend
) -> None:
    hashes = fill(s3)
    bad = hashes[3]
    s3env.client().put_object(Bucket=s3.bucket, Key=s3.key_for(bad), Body=b'rot')
    summary = migrate(s3, fs, progress=False)
    assert summary == MigrateSummary(4, 0, 1, {bad: summary.failures[bad]})
    assert not fs.exists(bad)
    assert list(fs.iter_hashes()) == [h for h in hashes if h != bad]
    assert list((fs.root / 'tmp').iterdir()) == []


@s3mark
def test_progress_bar_and_summary(
    fs: FilesystemBackend, s3: S3Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(fs)
    summary = migrate(fs, s3, progress=True)
    assert str(summary) == '5 copied, 0 skipped, 0 failed'
    assert '5obj' in capsys.readouterr().err.replace(' ', '')


@s3mark
def test_algorithms_must_match(tmp_path: Path, s3: S3Backend) -> None:
    other = FilesystemBackend(tmp_path / 'md5', 'md5')
    other.put(io.BytesIO(b'x'))
    with pytest.raises(StoreMismatch):
        migrate(other, s3, progress=False)
    assert hashlib.sha256(b'x').hexdigest() not in list(s3.iter_hashes())


# -- the source is never written, a missing source is an error (issue 11 #10) ----
def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: a write shows here."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob('*'))
    }


def one_line_error(result) -> str:
    assert 'Traceback' not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('filestorectl: '), lines
    return lines[0]


def test_cli_migrate_from_a_typo_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    typo, target = tmp_path / 'TYPO', tmp_path / 'target'
    result = filestorectl('migrate', '--from', f'fs:{typo}', '--to', f'fs:{target}')
    assert result.returncode == 2, result
    assert str(typo) in one_line_error(result)
    assert not typo.exists() and not target.exists()


def test_cli_migrate_from_a_directory_without_a_store_is_exit_2(
    tmp_path: Path,
) -> None:
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('not a store')
    before = tree(empty)
    result = filestorectl('migrate', '--from', str(empty), '--to', str(tmp_path / 't'))
    assert result.returncode == 2, result
    assert str(empty) in one_line_error(result)
    assert tree(empty) == before  # no wsgi-store.json, no shard directories


def test_cli_migrate_from_another_algorithm_is_one_line_no_traceback(
    tmp_path: Path,
) -> None:
    source = FilesystemBackend(tmp_path / 'md5', 'md5', fsync=False)
    source.put(io.BytesIO(b'x'))
    before = tree(source.root)
    result = filestorectl(
        'migrate', '--from', f'fs:{source.root}', '--to', f'fs:{tmp_path / "t"}'
    )
    assert result.returncode == 2, result
    assert 'md5' in one_line_error(result)
    assert tree(source.root) == before


def test_cli_migrate_into_another_algorithm_is_one_line_no_traceback(
    tmp_path: Path,
) -> None:
    source = FilesystemBackend(tmp_path / 'src', 'md5', fsync=False)
    source.put(io.BytesIO(b'x'))
    FilesystemBackend(tmp_path / 'sha', 'sha256', fsync=False)
    result = filestorectl(
        'migrate',
        '--hash',
        'md5',
        '--from',
        f'fs:{source.root}',
        '--to',
        f'fs:{tmp_path / "sha"}',
    )
    assert result.returncode == 2, result
    assert 'sha256' in one_line_error(result)


def test_cli_migrate_never_writes_into_its_fs_source(tmp_path: Path) -> None:
    source = FilesystemBackend(tmp_path / 'src', 'sha256', fsync=False)
    hashes = fill(source)
    before = tree(source.root)
    target = tmp_path / 'dst'
    result = filestorectl('migrate', '--from', f'fs:{source.root}', '--to', str(target))
    assert result.returncode == 0, result
    assert '5 copied, 0 skipped, 0 failed' in result.stdout
    assert tree(source.root) == before
    assert list(FilesystemBackend(target, fsync=False).iter_hashes()) == hashes


def test_open_source_refuses_a_missing_store_without_creating_it(
    tmp_path: Path,
) -> None:
    typo = tmp_path / 'TYPO'
    with pytest.raises(MigrateError, match='does not exist'):
        open_source(Config(store_dir=typo))
    assert not typo.exists()
    typo.mkdir()
    with pytest.raises(MigrateError, match='holds no wsgi-store store'):
        open_source(Config(store_dir=typo))
    assert list(typo.iterdir()) == []


@s3mark
def test_open_source_never_writes_metadata_into_an_s3_prefix(prefix: str) -> None:
    s3env.client().put_object(
        Bucket=s3env.bucket(), Key=f'{prefix}/stray.txt', Body=b'not a store'
    )
    before = s3env.list_keys(prefix)
    with pytest.raises(MigrateError, match='holds no wsgi-store store'):
        open_source(s3env.s3_config(prefix))
    assert s3env.list_keys(prefix) == before


@s3mark
def test_cli_migrate_from_s3_without_metadata_is_exit_2_and_writes_nothing(
    prefix: str, tmp_path: Path
) -> None:
    s3env.client().put_object(
        Bucket=s3env.bucket(), Key=f'{prefix}/stray.txt', Body=b'not a store'
    )
    before = s3env.list_keys(prefix)
    env = ctl_env(
        WSGI_STORE_S3_ENDPOINT_URL=os.environ['S3_ENDPOINT_URL'],
        WSGI_STORE_S3_REGION=os.environ.get('AWS_DEFAULT_REGION', 'us-east-1'),
    )
    source = f's3://{s3env.bucket()}/{prefix}'
    target = tmp_path / 'dst'
    result = filestorectl('migrate', '--from', source, '--to', str(target), env=env)
    assert result.returncode == 2, result
    assert 'holds no wsgi-store store' in one_line_error(result)
    assert s3env.list_keys(prefix) == before  # no wsgi-store.json written
    assert not target.exists()
