"""Migrations between the filesystem and S3 backends (S3 from tests/s3env.py)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import s3env
from wsgi_store.backends.base import Backend
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.backends.s3 import S3Backend
from wsgi_store.errors import StoreMismatch
from wsgi_store.migrate import MigrateSummary, migrate

pytestmark = pytest.mark.s3

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


def test_progress_bar_and_summary(
    fs: FilesystemBackend, s3: S3Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(fs)
    summary = migrate(fs, s3, progress=True)
    assert str(summary) == '5 copied, 0 skipped, 0 failed'
    assert '5obj' in capsys.readouterr().err.replace(' ', '')


def test_algorithms_must_match(tmp_path: Path, s3: S3Backend) -> None:
    other = FilesystemBackend(tmp_path / 'md5', 'md5')
    other.put(io.BytesIO(b'x'))
    with pytest.raises(StoreMismatch):
        migrate(other, s3, progress=False)
    assert hashlib.sha256(b'x').hexdigest() not in list(s3.iter_hashes())
