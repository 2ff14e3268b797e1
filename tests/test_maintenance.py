"""filestorectl verify / gc / stats (wsgi_store.maintenance.tasks) on real stores."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import sha256
from wsgi_store.backends.base import Backend, ObjectInfo, PutResult, Staged
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.config import Config
from wsgi_store.errors import NotFound
from wsgi_store.maintenance import tasks as maintenance
from wsgi_store.maintenance.verify import hash_object, verify_backend

GOOD = [b'first object\n', b'second object\n' * 100, b'']


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(store_dir=tmp_path / 'store')


@pytest.fixture
def fs(config: Config) -> FilesystemBackend:
    backend = FilesystemBackend(config.store_dir, config.hash)
    for data in GOOD:
        backend.put(io.BytesIO(data))
    return backend


def all_files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path (symlinks as targets)."""
    found = {}
    for path in root.rglob('*'):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def object_path(fs: FilesystemBackend, data: bytes) -> Path:
    return Path(fs.path_for(sha256(data)))


# -- verify ----------------------------------------------------------------------
def test_verify_intact_store_exits_0(config, fs, capsys) -> None:
    assert maintenance.verify(config, progress=False) == 0
    out = capsys.readouterr().out
    assert f'verified {len(GOOD)} object(s)' in out
    assert 'the store is intact' in out


def test_verify_reports_corrupt_object_and_leaves_it(config, fs, capsys) -> None:
    path = object_path(fs, GOOD[1])
    path.write_bytes(b'bit rot')
    assert maintenance.verify(config, progress=False) == 1
    out = capsys.readouterr().out
    assert f'CORRUPT {path.name}: its bytes hash to {sha256(b"bit rot")}' in out
    assert '1 corrupt' in out
    assert path.read_bytes() == b'bit rot'  # without --repair nothing moves


def test_verify_reports_misnamed_entries(config, fs, capsys) -> None:
    good = sha256(b'elsewhere')
    wrong_shard = fs.root / 'ab' / ('cd' + good[2:])  # right length, wrong shard
    wrong_shard.write_bytes(b'elsewhere')
    upper = fs.root / good[:2] / good.upper()
    upper.write_bytes(b'elsewhere')
    junk = fs.root / '00' / 'notes.txt'
    junk.write_bytes(b'junk')
    link = fs.root / good[:2] / good
    link.symlink_to('/etc/hostname')
    assert maintenance.verify(config, progress=False) == 1
    out = capsys.readouterr().out
    for path in (wrong_shard, upper, junk, link):
        assert f'MISNAMED {path}' in out
    assert '4 misnamed' in out and '0 corrupt' in out
    assert f'verified {len(GOOD)} object(s)' in out  # no double counting


def test_verify_swapped_content_is_corrupt(config, fs, capsys) -> None:
    """A file holding another object's bytes is reported under its name."""
    target = object_path(fs, GOOD[0])
    target.write_bytes(GOOD[1])
    assert maintenance.verify(config, progress=False) == 1
    assert f'its bytes hash to {sha256(GOOD[1])}' in capsys.readouterr().out


def test_repair_quarantines_and_never_deletes(config, fs, capsys) -> None:
    corrupt = object_path(fs, GOOD[1])
    corrupt.write_bytes(b'bit rot')
    misnamed = fs.root / '00' / 'stray.bin'
    misnamed.write_bytes(b'stray')
    before = all_files(fs.root)
    contents_before = sorted(before.values())
    assert maintenance.verify(config, repair=True, progress=False) == 1
    out = capsys.readouterr().out
    assert '2 moved to quarantine' in out
    after = all_files(fs.root)
    assert sorted(after.values()) == contents_before  # every byte is still there
    assert not corrupt.exists() and not misnamed.exists()
    quarantined = sorted(p.read_bytes() for p in (fs.root / 'quarantine').iterdir())
    assert quarantined == [b'bit rot', b'stray']
    assert object_path(fs, GOOD[0]).read_bytes() == GOOD[0]  # good ones stay
    # The store is intact again; the quarantine is not part of it.
    assert maintenance.verify(config, progress=False) == 0


def test_repair_quarantines_same_misnamed_name_twice(config, fs, capsys) -> None:
    for content in (b'one', b'two'):
        (fs.root / '00' / 'stray').write_bytes(content)
        assert maintenance.verify(config, repair=True, progress=False) == 1
    names = sorted(p.read_bytes() for p in (fs.root / 'quarantine').iterdir())
    assert names == [b'one', b'two']


def test_quarantine_twice_in_one_second_keeps_both(fs, monkeypatch) -> None:
    """Regression: quarantine once named copies ``<hash>.<seconds>``, so a second
    corrupt copy quarantined within the same second replaced the first."""
    import wsgi_store.backends.fsquarantine as fs_module

    real_gmtime = time.gmtime
    monkeypatch.setattr(fs_module.time, 'time', lambda: 1_700_000_000.0)
    monkeypatch.setattr(fs_module.time, 'gmtime', lambda *a: real_gmtime(1.7e9))
    path = object_path(fs, GOOD[0])
    for content in (b'first bad copy', b'second bad copy'):
        path.write_bytes(content)
        fs.quarantine(path.name)
    kept = sorted(p.read_bytes() for p in fs.quarantine_dir.iterdir())
    assert kept == [b'first bad copy', b'second bad copy']


def test_verify_progress_bar_counts_objects_and_bytes(config, fs, capsys) -> None:
    assert maintenance.verify(config, progress=True) == 0
    err = capsys.readouterr().err
    assert f'{len(GOOD)}/{len(GOOD)}' in err and 'obj' in err
    assert 'KiB' in err or ' B' in err


def test_verify_no_store_is_an_error_and_creates_nothing(tmp_path, capsys) -> None:
    config = Config(store_dir=tmp_path / 'typo')
    assert maintenance.verify(config, progress=False) == 1
    assert 'no store at' in capsys.readouterr().err
    assert not (tmp_path / 'typo').exists()


# -- verify on a backend that is not a filesystem ---------------------------------
class MemoryBackend(Backend):
    """A dict-backed backend: proves verify needs only the Backend contract."""

    name = 'memory'

    def __init__(self) -> None:
        self.algorithm = 'sha256'
        self.objects: dict[str, bytes] = {}
        self.quarantined: dict[str, bytes] = {}
        self.vanish: set[str] = set()

    def stage(self, source, *, extra_algorithms=(), length=None, max_bytes=0):
        data = source.read()
        return Staged(sha256(data), len(data), {}, data)

    def commit(self, staged: Staged) -> PutResult:
        created = staged.hash not in self.objects
        self.objects.setdefault(staged.hash, staged.handle)
        staged.done = True
        return PutResult(staged.hash, staged.size, created)

    def discard(self, staged: Staged) -> None:
        staged.done = True

    def stat(self, hex_hash: str) -> ObjectInfo:
        if hex_hash not in self.objects:
            raise NotFound(hex_hash)
        return ObjectInfo(hex_hash, len(self.objects[hex_hash]))

    def open(self, hex_hash: str, start: int = 0, end: int | None = None):
        if hex_hash not in self.objects or hex_hash in self.vanish:
            raise NotFound(hex_hash)
        return io.BytesIO(self.objects[hex_hash][start:end])

    def delete(self, hex_hash: str) -> None:
        self.stat(hex_hash)
        del self.objects[hex_hash]

    def iter_hashes(self, after: str = '') -> Iterator[str]:
        yield from sorted(h for h in self.objects if h > after)

    def quarantine(self, hex_hash: str) -> str:
        self.quarantined[hex_hash] = self.objects.pop(hex_hash)
        return f'memory://quarantine/{hex_hash}'


@pytest.fixture
def memory(monkeypatch, tmp_path) -> MemoryBackend:
    backend = MemoryBackend()
    for data in GOOD:
        backend.put(io.BytesIO(data))
    monkeypatch.setattr(maintenance, 'make_backend', lambda config: backend)
    return backend


def memory_config(tmp_path: Path) -> Config:
    return Config(store_dir=tmp_path / 'unused', backend='s3', s3_bucket='b')


def test_verify_any_backend_repairs_through_quarantine(memory, tmp_path, capsys):
    bad = sha256(GOOD[0])
    memory.objects[bad] = b'flipped'
    memory.objects['not-a-hash'] = b'x'
    assert maintenance.verify(memory_config(tmp_path), repair=True) == 1
    out = capsys.readouterr().out
    assert f'CORRUPT {bad}' in out and 'MISNAMED not-a-hash' in out
    assert memory.quarantined == {bad: b'flipped', 'not-a-hash': b'x'}
    assert maintenance.verify(memory_config(tmp_path), progress=False) == 0


def test_object_deleted_during_verify_is_not_a_problem(memory, tmp_path, capsys):
    memory.vanish.add(sha256(GOOD[1]))
    assert maintenance.verify(memory_config(tmp_path), progress=False) == 0
    assert '1 deleted while verifying' in capsys.readouterr().out


# -- gc --------------------------------------------------------------------------
def make_temp(fs: FilesystemBackend, name: str, age: float) -> Path:
    path = fs.tmp / name
    path.write_bytes(b'partial upload')
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_gc_removes_only_old_temp_files(config, fs, capsys) -> None:
    old = make_temp(fs, '111.aaaa.part', age=7200)
    fresh = make_temp(fs, '222.bbbb.part', age=10)
    objects = all_files(fs.root)
    objects.pop('tmp/111.aaaa.part')
    assert maintenance.gc(config) == 0  # temp_max_age defaults to 3600 s
    assert not old.exists() and fresh.exists()
    assert 'removed 1 temporary upload(s) older than 3600 s' in capsys.readouterr().out
    assert all_files(fs.root) == objects  # objects untouched


def test_gc_older_than_overrides_config(config, fs, capsys) -> None:
    fresh = make_temp(fs, '222.bbbb.part', age=120)
    assert maintenance.gc(config, older_than=60) == 0
    assert not fresh.exists()


def test_gc_refuses_negative_age(config, fs, capsys) -> None:
    assert maintenance.gc(config, older_than=-1) == 1
    assert 'negative' in capsys.readouterr().err


# -- stats -------------------------------------------------------------------------
def test_stats_json(config, fs, capsys) -> None:
    make_temp(fs, '1.x.part', age=0)
    assert maintenance.stats(config, as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc['objects'] == len(GOOD)
    assert doc['bytes'] == sum(len(d) for d in GOOD)
    shards = {sha256(d)[:2] for d in GOOD}
    assert doc['shard_max'] == 1 and doc['shard_min'] == 0
    assert doc['shard_mean'] == round(len(shards) / 256, 2)
    st = os.statvfs(fs.root)
    assert 0 < doc['free_bytes'] <= st.f_blocks * st.f_frsize
    assert doc['free_inodes'] is None or doc['free_inodes'] > 0
    assert doc['temp_files'] == 1 and doc['quarantined'] == 0
    assert doc['backend'] == 'fs' and doc['algorithm'] == 'sha256'


def test_stats_text(config, fs, capsys) -> None:
    assert maintenance.stats(config) == 0
    out = capsys.readouterr().out
    size = sum(len(d) for d in GOOD)
    assert f'objects      {len(GOOD)}\n' in out
    assert f'bytes        {size} ' in out
    assert 'per shard    min 0, max 1' in out
    assert 'free bytes' in out and 'free inodes' in out


def test_stats_counts_many_objects_per_shard(config, fs, capsys) -> None:
    for i in range(600):
        fs.put(io.BytesIO(b'%d' % i))
    assert maintenance.stats(config, as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc['objects'] == 600 + len(GOOD)
    assert doc['shard_max'] >= 3  # 603 objects in 256 shards: some hold 3+
    assert doc['shard_mean'] == round((600 + len(GOOD)) / 256, 2)


def test_hash_object_streams(fs) -> None:
    assert hash_object(fs, sha256(GOOD[1]), chunk=7) == (
        hashlib.sha256(GOOD[1]).hexdigest(),
        len(GOOD[1]),
    )


# -- regressions in backends/fs.py (failing until fixed there) ----------------------
def test_bug_sweep_temp_survives_a_directory_in_tmp(config, fs) -> None:
    """A directory in STORE/tmp (made by hand, lost+found...) makes sweep_temp
    raise IsADirectoryError: gunicorn's on_starting sweep then stops the start,
    and gc fails. Fix in FilesystemBackend.sweep_temp: skip entries that are
    not regular files (``entry.is_file(follow_symlinks=False)``)."""
    (fs.tmp / 'lost+found').mkdir()
    old = make_temp(fs, '1.a.part', age=7200)
    assert maintenance.sweep_on_start(config) == 1
    assert not old.exists() and (fs.tmp / 'lost+found').is_dir()


def test_bug_iter_hashes_yields_only_object_names(fs) -> None:
    """iter_hashes yields any name of the right length in any shard: uppercase or
    non-hex names and files in the wrong shard, which GET /files then lists and
    open() cannot find. Fix in FilesystemBackend.iter_hashes: also require
    ``name.startswith(shard)`` and a lowercase-hex name."""
    (fs.root / 'ab' / ('cd' + '0' * 62)).write_bytes(b'wrong shard')
    (fs.root / '00' / ('Z' * 64)).write_bytes(b'not hex')
    (fs.root / 'ee' / ('EE' + 'A' * 62)).write_bytes(b'upper case')
    assert list(fs.iter_hashes()) == sorted(sha256(d) for d in GOOD)


@pytest.mark.parametrize('when', ['before the inode check', 'during the rename'])
def test_repair_never_quarantines_an_object_replaced_after_hashing(
    config, fs, monkeypatch, when
) -> None:
    """A corrupt object is hashed; then a client deletes it and uploads the right
    bytes again. ``verify --repair`` acts on the inode it hashed: the good
    object stays in place and nothing is quarantined."""
    from wsgi_store.maintenance import verify as verify_module

    good = GOOD[1]
    name, path = sha256(good), object_path(fs, good)
    path.write_bytes(b'bit rot')
    replaced: list[bool] = []

    def reupload() -> None:
        if not replaced:
            replaced.append(True)
            client = FilesystemBackend(config.store_dir)  # another process's view
            client.delete(name)
            assert client.put(io.BytesIO(good)).created is True

    if when == 'before the inode check':
        real_hash = verify_module.hash_stream

        def hash_then_replace(f, algorithm, chunk=1 << 20):
            result = real_hash(f, algorithm, chunk)
            if result[0] == sha256(b'bit rot'):  # just hashed the corrupt one
                reupload()
            return result

        monkeypatch.setattr(verify_module, 'hash_stream', hash_then_replace)
    else:
        real_rename = os.rename

        def rename(src, dst, *args, **kwargs):
            if os.fspath(src) == str(path):
                reupload()
            return real_rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, 'rename', rename)
    out = io.StringIO()
    report = verify_backend(fs, repair=True, out=out)
    assert replaced and report.corrupt == [name]
    assert report.quarantined == []
    assert path.read_bytes() == good
    assert not fs.quarantine_dir.exists() or not any(fs.quarantine_dir.iterdir())
    assert 'left in place' in out.getvalue()


# -- capabilities instead of asking which backend it is ----------------------------
class SpaciousMemory(MemoryBackend):
    """A non-filesystem backend with the filesystem's capabilities."""

    live_temps_locked = True

    def __init__(self) -> None:
        super().__init__()
        self.stray = ['sh/stray.txt']
        self.swept: list[float] = []

    def sweep_temp(self, max_age: float) -> int:
        self.swept.append(max_age)
        return 7

    def space(self):
        from wsgi_store.backends.base import Space

        return Space(free_bytes=123, free_inodes=45, quarantined=len(self.quarantined))

    def layout_problems(self):
        from wsgi_store.backends.base import LayoutProblem

        for where in self.stray:
            yield LayoutProblem(where, where.rpartition('/')[2], 'not an object')

    def quarantine_entry(self, problem) -> str:
        self.stray.remove(problem.where)
        return f'memory://quarantine/{problem.name}'


def test_stats_ask_the_backend_for_its_space(tmp_path) -> None:
    stats = maintenance.collect_stats(SpaciousMemory())
    assert (stats.free_bytes, stats.free_inodes, stats.quarantined) == (123, 45, 0)
    plain = maintenance.collect_stats(MemoryBackend())
    assert (plain.free_bytes, plain.free_inodes, plain.quarantined) == (None,) * 3


def test_verify_reports_and_repairs_any_backends_layout_problems(capsys) -> None:
    backend = SpaciousMemory()
    report = verify_backend(backend, repair=True, progress=False)
    out = capsys.readouterr().out
    assert 'MISNAMED sh/stray.txt: not an object' in out
    assert report.misnamed == ['sh/stray.txt'] and backend.stray == []
    assert report.quarantined == ['memory://quarantine/stray.txt']


def test_sweep_before_start_sweeps_only_where_live_uploads_are_locked() -> None:
    locked = SpaciousMemory()
    assert locked.sweep_before_start() == 7 and locked.swept == [0]

    class Unlocked(SpaciousMemory):
        live_temps_locked = False

    unlocked = Unlocked()
    assert unlocked.sweep_before_start() == 0 and unlocked.swept == []
