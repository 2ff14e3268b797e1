"""Store maintenance: the start-up sweep and ``filestorectl verify``, ``gc``, ``stats``.

:func:`verify`, :func:`gc` and :func:`stats` are CLI-facing: they print their
results (problems and summaries to stdout, the progress bar and errors to
stderr) and return the process exit code. They work on any backend through
the :class:`~wsgi_store.backends.base.Backend` contract (``iter_hashes``,
streaming ``open``, ``quarantine``); the filesystem backend additionally gets a
scan for entries that are not objects at all (misnamed files, wrong shard).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .backends import Backend, make_backend
from .backends.fs import META_NAME, SHARDS, FilesystemBackend
from .config import Config
from .digests import new_hasher
from .errors import NotFound, StoreError

logger = logging.getLogger(__name__)

SHARD_COUNT = 256  # objects live under the first two hex digits of their hash
_LOWER_HEX = re.compile(r'[0-9a-f]+')
Say = Callable[[str], None]


def sweep_on_start(config: Config) -> int:
    """Remove every temp upload left by a previous run (call before workers fork)."""
    if config.backend != 'fs':
        return 0  # S3 temp keys may belong to other nodes: gc removes old ones
    backend = make_backend(config)
    try:
        return backend.sweep_temp(0)
    finally:
        backend.close()


# -- verify ----------------------------------------------------------------------
@dataclass
class VerifyReport:
    """What a verify run found."""

    checked: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    misnamed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    vanished: int = 0  # deleted while verify ran: not a problem
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not (self.corrupt or self.misnamed or self.unreadable)

    def summary(self) -> str:
        text = (
            f'verified {self.checked} object(s), {human_bytes(self.bytes)}: '
            f'{len(self.corrupt)} corrupt, {len(self.misnamed)} misnamed, '
            f'{len(self.unreadable)} unreadable'
        )
        if self.quarantined:
            text += f'; {len(self.quarantined)} moved to quarantine'
        if self.vanished:
            text += f'; {self.vanished} deleted while verifying'
        return text + ('' if not self.ok else ' - the store is intact')


def verify(config: Config, repair: bool = False, progress: bool = True) -> int:
    """Re-hash every object and report those whose bytes do not match their name.

    Args:
        config: the store to check.
        repair: move each corrupt or misnamed object to the quarantine (never
            delete it).
        progress: show a tqdm progress bar on stderr.

    Returns:
        0 when every object is intact, 1 when anything was wrong (or the store
        could not be read).
    """
    backend = _open_store(config)
    if backend is None:
        return 1
    try:
        report = verify_backend(backend, repair=repair, progress=progress)
    except (StoreError, OSError) as exc:
        print(f'error: verify stopped: {exc}', file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(report.summary())
    return 0 if report.ok else 1


def verify_backend(
    backend: Backend,
    *,
    repair: bool = False,
    progress: bool = False,
    out: IO[str] | None = None,
) -> VerifyReport:
    """Verify every object of ``backend``; print each problem to ``out``.

    Args:
        backend: any backend.
        repair: quarantine each corrupt or misnamed object.
        progress: show the progress bar (objects, bytes, rate, ETA) on stderr.
        out: where problems are reported (stdout by default).

    Returns:
        The :class:`VerifyReport`.
    """
    report = VerifyReport()
    say = _printer(out)
    skip: Counter[str] = Counter()
    if isinstance(backend, FilesystemBackend):
        skip = _check_fs_layout(backend, report, repair, say)
    total = sum(1 for _ in backend.iter_hashes())
    bar = tqdm(
        total=total, unit='obj', disable=not progress, file=sys.stderr, leave=True
    )
    started = time.monotonic()
    try:
        for name in backend.iter_hashes():
            if skip[name] > 0:  # already reported by the layout scan
                skip[name] -= 1
            else:
                _verify_one(backend, name, report, repair, say)
            bar.update(1)
            elapsed = max(time.monotonic() - started, 1e-9)
            rate = human_bytes(int(report.bytes / elapsed))
            bar.set_postfix_str(f'{human_bytes(report.bytes)}, {rate}/s', refresh=False)
    finally:
        bar.close()
    return report


def _printer(out: IO[str] | None) -> Say:
    def say(line: str) -> None:
        tqdm.write(line, file=out or sys.stdout)

    return say


def _verify_one(
    backend: Backend, name: str, report: VerifyReport, repair: bool, say: Say
) -> None:
    if not _is_hash(name, backend):
        report.misnamed.append(name)
        say(f'MISNAMED {name}: not a {backend.algorithm} hex digest')
        if repair:
            _quarantine(backend, name, report, say)
        return
    try:
        actual, size = hash_object(backend, name)
    except NotFound:
        report.vanished += 1
        return
    except OSError as exc:
        report.unreadable.append(name)
        say(f'UNREADABLE {name}: {exc} (left in place)')
        return
    report.checked += 1
    report.bytes += size
    if actual == name:
        return
    report.corrupt.append(name)
    say(f'CORRUPT {name}: its bytes hash to {actual}')
    # NOTE: confirm before moving: a client may have replaced the object (delete
    # and upload again) since it was hashed.
    if repair and _still_corrupt(backend, name):
        _quarantine(backend, name, report, say)


def _still_corrupt(backend: Backend, name: str) -> bool:
    try:
        return hash_object(backend, name)[0] != name
    except (NotFound, OSError):
        return False


def _quarantine(backend: Backend, name: str, report: VerifyReport, say: Say) -> None:
    try:
        where = backend.quarantine(name)
    except NotFound:
        return
    report.quarantined.append(where)
    say(f'  moved to {where}')


def hash_object(
    backend: Backend, hex_hash: str, chunk: int = 1 << 20
) -> tuple[str, int]:
    """Stream an object through the store's hash; return (hexdigest, size)."""
    hasher = new_hasher(backend.algorithm)
    size = 0
    with backend.open(hex_hash) as f:
        while data := f.read(chunk):
            hasher.update(data)
            size += len(data)
    return hasher.hexdigest(), size


def _is_hash(name: str, backend: Backend) -> bool:
    length = len(new_hasher(backend.algorithm).hexdigest())
    return len(name) == length and _LOWER_HEX.fullmatch(name) is not None


def _check_fs_layout(
    backend: FilesystemBackend, report: VerifyReport, repair: bool, say: Say
) -> Counter[str]:
    """Report shard entries that are not objects; return the names to skip.

    An entry is an object when it is a regular file (not a symlink) named by
    lowercase hex of the right length that starts with its shard's name.
    ``iter_hashes`` still yields such entries when their name has the right
    length, so they are returned for the main loop to skip once each.
    """
    skip: Counter[str] = Counter()
    for path, reason in _misplaced_entries(backend):
        report.misnamed.append(str(path))
        say(f'MISNAMED {path}: {reason}')
        if len(path.name) == backend.hex_length:
            skip[path.name] += 1
        if repair:
            where = _quarantine_path(backend, path)
            report.quarantined.append(str(where))
            say(f'  moved to {where}')
    return skip


def _misplaced_entries(backend: FilesystemBackend) -> Iterator[tuple[Path, str]]:
    for shard in SHARDS:
        try:
            entries = sorted(os.scandir(backend.root / shard), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            reason = _entry_problem(entry, shard, backend)
            if reason:
                yield Path(entry.path), reason


def _entry_problem(entry: os.DirEntry, shard: str, backend: FilesystemBackend) -> str:
    name = entry.name
    if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
        return 'not a regular file'
    if not _is_hash(name, backend):
        return f'not a {backend.algorithm} name (lowercase hex, {backend.hex_length})'
    if not name.startswith(shard):
        return f'in shard {shard}, but its name belongs in {name[:2]}'
    return ''


def _quarantine_path(backend: FilesystemBackend, path: Path) -> Path:
    """Move a non-object out of the shards, never overwriting anything."""
    backend.quarantine_dir.mkdir(mode=0o750, exist_ok=True)
    base = f'misnamed.{path.parent.name}.{path.name}.{time.time_ns()}'
    for attempt in range(1000):
        target = backend.quarantine_dir / f'{base}.{attempt}'
        if path.is_dir() and not path.is_symlink():
            if not target.exists():
                os.rename(path, target)
                return target
            continue
        try:
            os.link(path, target, follow_symlinks=False)  # fails if target exists
        except FileExistsError:
            continue
        os.unlink(path)
        return target
    raise FileExistsError(f'no free quarantine name for {path}')


# -- gc --------------------------------------------------------------------------
def gc(config: Config, older_than: float | None = None) -> int:
    """Remove temporary uploads older than ``older_than`` seconds.

    Args:
        config: the store.
        older_than: the age in seconds (``config.temp_max_age`` when None).
            NOTE: 0 removes every temporary upload, including those in flight:
            use it only while the service is stopped.

    Returns:
        0 on success, 1 when the store could not be cleaned.
    """
    age = float(config.temp_max_age if older_than is None else older_than)
    if age < 0:
        print('error: --older-than must not be negative', file=sys.stderr)
        return 1
    backend = _open_store(config)
    if backend is None:
        return 1
    try:
        removed = backend.sweep_temp(age)
    except (StoreError, OSError) as exc:
        print(f'error: gc failed: {exc}', file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(f'removed {removed} temporary upload(s) older than {age:g} s')
    return 0


# -- stats -------------------------------------------------------------------------
@dataclass
class StoreStats:
    """Counts and free space of a store."""

    backend: str
    algorithm: str
    objects: int = 0
    bytes: int = 0
    shard_min: int = 0
    shard_max: int = 0
    shard_mean: float = 0.0
    free_bytes: int | None = None  # None: the backend has no such notion
    free_inodes: int | None = None  # None: not tracked by the filesystem
    temp_files: int = 0
    quarantined: int | None = None


def collect_stats(backend: Backend) -> StoreStats:
    """Count the objects, bytes and per-shard spread of any backend."""
    result = StoreStats(backend.name, backend.algorithm)
    shards: Counter[str] = Counter()
    for name in backend.iter_hashes():
        try:
            size = backend.stat(name).size
        except NotFound:
            continue  # deleted meanwhile
        result.objects += 1
        result.bytes += size
        shards[name[:2]] += 1
    counts = [shards.get(f'{i:02x}', 0) for i in range(SHARD_COUNT)]
    result.shard_min, result.shard_max = min(counts), max(counts)
    result.shard_mean = round(sum(counts) / SHARD_COUNT, 2)
    result.temp_files = len(backend.temp_names())
    if isinstance(backend, FilesystemBackend):
        st = os.statvfs(backend.root)
        result.free_bytes = st.f_bavail * st.f_frsize
        result.free_inodes = st.f_favail if st.f_files else None
        qdir = backend.quarantine_dir
        result.quarantined = len(os.listdir(qdir)) if qdir.is_dir() else 0
    return result


def stats(config: Config, as_json: bool = False) -> int:
    """Print object count, bytes, per-shard spread, free bytes and free inodes.

    Returns:
        0 on success, 1 when the store could not be read.
    """
    backend = _open_store(config)
    if backend is None:
        return 1
    try:
        result = collect_stats(backend)
    except (StoreError, OSError) as exc:
        print(f'error: stats failed: {exc}', file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(json.dumps(asdict(result), indent=1) if as_json else format_stats(result))
    return 0


def format_stats(s: StoreStats) -> str:
    """The human-readable stats table."""

    def opt(value: int | None, text: str) -> str:
        return 'n/a' if value is None else text

    rows = [
        ('backend', f'{s.backend} ({s.algorithm})'),
        ('objects', str(s.objects)),
        ('bytes', f'{s.bytes} ({human_bytes(s.bytes)})'),
        (
            'per shard',
            f'min {s.shard_min}, max {s.shard_max}, mean {s.shard_mean:g} objects '
            f'over {SHARD_COUNT} shards',
        ),
        (
            'free bytes',
            opt(s.free_bytes, f'{s.free_bytes} ({human_bytes(s.free_bytes or 0)})'),
        ),
        ('free inodes', opt(s.free_inodes, str(s.free_inodes))),
        ('temp files', str(s.temp_files)),
        ('quarantined', opt(s.quarantined, str(s.quarantined))),
    ]
    return '\n'.join(f'{name:<12} {value}' for name, value in rows)


# -- helpers -------------------------------------------------------------------------
def _open_store(config: Config) -> Backend | None:
    """The backend, or None (after printing why) when there is no store to open.

    NOTE: the filesystem backend creates a missing store; a maintenance command
    given a mistyped path must say so instead of checking an empty new store.
    """
    if config.backend == 'fs' and not (config.store_dir / META_NAME).is_file():
        print(f'error: no store at {config.store_dir}', file=sys.stderr)
        return None
    try:
        return make_backend(config)
    except StoreError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return None


def human_bytes(count: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    value = float(count)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1024
    return f'{value:.1f} TiB'
