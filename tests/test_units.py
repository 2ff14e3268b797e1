"""Unit tests: configuration, digests, ranges, group commit, store metadata."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from pathlib import Path

import pytest

from wsgi_store.backends import dirsync
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.backends.streaming import copy_stream
from wsgi_store.config import Config, ConfigError
from wsgi_store.errors import (
    BadRequest,
    InvalidHash,
    RangeNotSatisfiable,
    StoreMismatch,
    TooLarge,
)
from wsgi_store.hashing import (
    available_algorithms,
    normalize_hash,
    parse_digest_header,
)
from wsgi_store.http.downloads import parse_range


def test_config_defaults_match_the_issue() -> None:
    c = Config.from_env({})
    assert (c.host, c.port, c.backlog, c.log_level) == ('127.0.0.1', 9000, 2048, 'INFO')
    assert (c.chunk_bytes, c.hash, c.max_upload_bytes, c.fsync) == (
        1 << 20,
        'sha256',
        0,
        True,
    )
    assert (c.workers, c.threads) == (2, 8)
    assert c.store_dir.is_absolute() and c.store_dir.name == 'store'


def test_config_env_then_flags() -> None:
    env = {
        'WSGI_STORE_PORT': '9100',
        'WSGI_STORE_FSYNC': 'off',
        'WSGI_STORE_MAX_UPLOAD_BYTES': '10M',
        'WSGI_STORE_STORE_DIR': 'rel/dir',
    }
    c = Config.from_env(env)
    assert (c.port, c.fsync, c.max_upload_bytes) == (9100, False, 10 << 20)
    assert c.store_dir == Path.cwd() / 'rel' / 'dir'
    c2 = c.replace(port='9200', fsync=None, max_upload_bytes='1K')
    assert (c2.port, c2.fsync, c2.max_upload_bytes) == (9200, False, 1024)


@pytest.mark.parametrize(
    ('env', 'message'),
    [
        ({'WSGI_STORE_PORT': 'x'}, 'WSGI_STORE_PORT'),
        ({'WSGI_STORE_FSYNC': 'maybe'}, 'WSGI_STORE_FSYNC'),
        ({'WSGI_STORE_BACKEND': 'ftp'}, 'WSGI_STORE_BACKEND: must be "fs" or "s3"'),
        ({'WSGI_STORE_MAX_UPLOAD_BYTES': '-1'}, 'negative'),
    ],
)
def test_config_errors_are_clear(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


def test_normalize_hash() -> None:
    assert normalize_hash('AB' * 32, 64) == 'ab' * 32
    for bad in [None, '', ['a' * 64, 'a' * 64], 'a' * 63, 'g' * 64, '../' * 21 + 'a']:
        with pytest.raises(InvalidHash):
            normalize_hash(bad, 64)


def test_algorithms() -> None:
    names = available_algorithms()
    assert 'sha256' in names and 'md5' in names
    assert not any(n.startswith('shake') for n in names)


def test_digest_header_parsing() -> None:
    b64 = base64.b64encode(hashlib.sha256(b'x').digest()).decode()
    [exp] = parse_digest_header(f'unknown=:AAA=:, sha-256=:{b64}:', 'Content-Digest')
    assert exp.algorithm == 'sha256' and exp.digest == hashlib.sha256(b'x').digest()
    for bad in ['sha-256=abc', 'sha-256=:!!:', 'sha-256=:AAAA:']:
        with pytest.raises(BadRequest):
            parse_digest_header(bad, 'Content-Digest')


def test_copy_stream_limits() -> None:
    sink = io.BytesIO()
    result = copy_stream(
        io.BytesIO(b'abc'), sink.write, ['sha256', 'md5'], chunk_bytes=1
    )
    assert result.size == 3 and sink.getvalue() == b'abc'
    assert result.digests['md5'] == hashlib.md5(b'abc').digest()
    with pytest.raises(TooLarge):
        copy_stream(
            io.BytesIO(b'abcd'), sink.write, ['sha256'], chunk_bytes=2, max_bytes=3
        )


@pytest.mark.parametrize(
    ('header', 'expected'),
    [
        (None, None),
        ('bytes=0-0', (0, 1)),
        ('bytes=-1', (9, 10)),
        ('bytes=-100', (0, 10)),
        ('bytes=3-', (3, 10)),
        ('bytes=2-1', None),
        ('bytes=1-2,4-5', None),
        ('bits=0-1', None),
        ('bytes=-', None),
        ('bytes=a-b', None),
    ],
)
def test_parse_range(header: str | None, expected: tuple | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize('header', ['bytes=10-', 'bytes=-0', 'bytes=99-100'])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


def test_store_refuses_other_algorithm(tmp_path: Path) -> None:
    FilesystemBackend(tmp_path, 'sha256')
    with pytest.raises(StoreMismatch, match='uses sha256'):
        FilesystemBackend(tmp_path, 'md5')
    assert FilesystemBackend(tmp_path, 'sha256').algorithm == 'sha256'


def test_store_layout_created_up_front(tmp_path: Path) -> None:
    FilesystemBackend(tmp_path, 'sha256')
    shards = sorted(p.name for p in tmp_path.iterdir() if len(p.name) == 2)
    assert len(shards) == 256 and shards[0] == '00' and shards[-1] == 'ff'
    assert (tmp_path / 'tmp').is_dir() and (tmp_path / 'wsgi-store.json').is_file()


def test_group_commit_covers_concurrent_callers(tmp_path: Path, monkeypatch) -> None:
    """Many threads syncing at once share flushes, and each returns only after a
    flush of its directory that began after its call."""
    events: list[tuple[str, str]] = []  # appends are atomic under the GIL
    gate = threading.Event()
    real = dirsync.fsync_dir

    def slow_fsync(path: str) -> None:
        events.append(('begin', str(path)))
        gate.wait(5)
        real(path)
        events.append(('end', str(path)))

    monkeypatch.setattr(dirsync, 'fsync_dir', slow_fsync)
    syncer = dirsync.DirSyncer()
    dirs = [tmp_path / f'd{i % 3}' for i in range(12)]
    for d in dirs:
        d.mkdir(exist_ok=True)

    def caller(i: int) -> None:
        events.append(('call', str(i)))
        syncer.sync(dirs[i])
        events.append(('return', str(i)))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(dirs))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while syncer._requested < len(dirs) and time.monotonic() < deadline:
        time.sleep(0.01)  # every caller is queued behind the first, blocked flush
    gate.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    for i, d in enumerate(dirs):
        called = events.index(('call', str(i)))
        returned = events.index(('return', str(i)))
        covering = [
            at
            for at, event in enumerate(events)
            if event == ('begin', str(d))
            and at > called
            and events.index(('end', str(d)), at) < returned
        ]
        assert covering, f'caller {i} returned without a flush begun after its call'
    flushes = [e for e in events if e[0] == 'begin']
    assert len(flushes) <= 1 + 3  # the first flush, then one shared flush of 3 dirs


def test_gunicorn_uses_sendfile_and_no_access_log_of_its_own(tmp_path: Path) -> None:
    """gunicorn's 'sendfile' setting only disables it: ours must leave it unset."""
    from wsgi_store.ops.server import StoreApplication, gunicorn_settings

    config = Config(store_dir=tmp_path / 'store').resolved()
    assert 'sendfile' not in gunicorn_settings(config)
    app = StoreApplication(config)
    assert app.cfg.sendfile is True
    logger = app.cfg.logger_class(app.cfg)
    assert logger.access(None, None, {}, None) is None  # the app logs access
