"""Store maintenance: the start-up sweep and ``filestorectl verify``, ``gc``, ``stats``.

:func:`verify`, :func:`gc` and :func:`stats` are CLI-facing: they print their
results (problems and summaries to stdout, the progress bar and errors to
stderr) and return the process exit code. They work on any backend through
the :class:`~wsgi_store.backends.base.Backend` contract; the verify engine
itself is :mod:`wsgi_store.maintenance.verify`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass

from wsgi_store.backends import Backend, backend_class, make_backend
from wsgi_store.backends.storemeta import META_NAME, SHARDS
from wsgi_store.config import Config, human_bytes
from wsgi_store.errors import NotFound, StoreError
from wsgi_store.maintenance.verify import verify_backend
from wsgi_store.tus.upkeep import count_uploads, sweep_expired

__all__ = ['StoreStats', 'collect_stats', 'gc', 'stats', 'sweep_on_start', 'verify']

logger = logging.getLogger(__name__)


def sweep_on_start(config: Config) -> int:
    """Remove every temp upload no live writer holds (in gunicorn's master).

    Safe beside a running instance on the same store: its in-flight uploads are
    locked (see :mod:`wsgi_store.backends.fstemp`) and skipped.
    """
    if not backend_class(config).live_temps_locked:
        # S3: temporary keys of other nodes look alike (gc removes old ones), and
        # no client is made in gunicorn's master.
        return 0
    backend = make_backend(config)
    try:
        return backend.sweep_before_start()
    finally:
        backend.close()


# -- verify ------------------------------------------------------------------------
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


# -- gc --------------------------------------------------------------------------
def gc(config: Config, older_than: float | None = None) -> int:
    """Remove temporary uploads older than ``older_than`` seconds.

    Args:
        config: the store.
        older_than: the age in seconds (``config.temp_max_age`` when None);
            0 means any age. Uploads in flight are never removed (their
            writer holds a lock on the temp file), whatever their age.

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
        expired = sweep_expired(config)  # resumable uploads past Upload-Expires
    except (StoreError, OSError) as exc:
        print(f'error: gc failed: {exc}', file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(f'removed {removed} temporary upload(s) older than {age:g} s')
    print(f'removed {expired} expired resumable upload(s)')
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
    resumable_uploads: int = 0  # live tus uploads (fs)
    resumable_expired: int = 0  # expired, removed by the next gc


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
    counts = [shards.get(shard, 0) for shard in SHARDS]
    result.shard_min, result.shard_max = min(counts), max(counts)
    result.shard_mean = round(sum(counts) / len(SHARDS), 2)
    result.temp_files = len(backend.temp_names())
    space = backend.space()
    result.free_bytes, result.free_inodes = space.free_bytes, space.free_inodes
    result.quarantined = space.quarantined
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
        uploads = count_uploads(config)
        result.resumable_uploads = uploads.live
        result.resumable_expired = uploads.expired
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
            f'over {len(SHARDS)} shards',
        ),
        (
            'free bytes',
            opt(s.free_bytes, f'{s.free_bytes} ({human_bytes(s.free_bytes or 0)})'),
        ),
        ('free inodes', opt(s.free_inodes, str(s.free_inodes))),
        ('temp files', str(s.temp_files)),
        ('quarantined', opt(s.quarantined, str(s.quarantined))),
        ('resumable', f'{s.resumable_uploads} live, {s.resumable_expired} expired'),
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
