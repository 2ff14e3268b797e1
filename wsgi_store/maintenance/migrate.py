"""Copy every object one backend has and another lacks, verifying each hash.

Used by ``filestorectl migrate --from fs:DIR --to s3`` (and back). Each object is
streamed from the source into the target's two-phase write: staged (hashed while
copied), compared with its name, and committed only when they match; a corrupt
source object is reported and left out. Objects already on the target are
skipped, so an interrupted migration is finished by running it again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from wsgi_store.backends.base import Backend
from wsgi_store.backends.fs import META_NAME
from wsgi_store.config import Config, ConfigError
from wsgi_store.errors import BackendUnavailable, StoreError, StoreMismatch

logger = logging.getLogger(__name__)


class MigrateError(ConfigError):
    """A migration cannot start; the message is one line naming the store.

    A :class:`ConfigError`, so ``filestorectl`` prints it as one line and exits 2.
    """


def open_source(config: Config, what: str = '--from') -> Backend:
    """Open the store to copy from, refusing anything that is not one.

    Nothing is written into the source: a directory or S3 prefix without a
    ``wsgi-store.json`` is refused (no empty store is created at a typo, no
    metadata is written into a foreign bucket), and so is a store made with
    another algorithm than ``config.hash``. Only then is the backend built; with
    the metadata present and matching, building it writes nothing.

    Raises:
        MigrateError: no store there, unreadable metadata, another algorithm.
        BackendUnavailable: S3 could not be asked.
    """
    meta = read_meta(config, what)
    algorithm = meta.get('algorithm')
    if algorithm != config.hash:
        raise MigrateError(
            f'{what}: that store uses {algorithm}, not {config.hash}; both stores '
            f'must use one algorithm (pass --hash {algorithm} and a target made '
            'with it)'
        )
    from wsgi_store.backends import make_backend

    return make_backend(config)


def open_target(config: Config, what: str = '--to') -> Backend:
    """Open (or create) the store to copy into; a mismatch is one line."""
    from wsgi_store.backends import make_backend

    try:
        return make_backend(config)
    except StoreMismatch as exc:
        raise MigrateError(f'{what}: {exc.detail}') from None


def read_meta(config: Config, what: str = '--from') -> dict[str, Any]:
    """The store's metadata document, read without writing anything."""
    where = _where(config)
    if config.backend == 's3':
        meta = _s3_meta(config)
    else:
        path = config.store_dir / META_NAME
        if not config.store_dir.is_dir():
            raise MigrateError(f'{what}: {where} does not exist')
        try:
            meta = json.loads(path.read_text('utf-8'))
        except FileNotFoundError:
            meta = None
        except (OSError, ValueError) as exc:
            raise MigrateError(f'{what}: cannot read {path}: {exc}') from None
    if meta is None:
        raise MigrateError(f'{what}: {where} holds no wsgi-store store')
    if not isinstance(meta, dict):
        raise MigrateError(f'{what}: {where}: {META_NAME} is not a store document')
    return meta


def _where(config: Config) -> str:
    if config.backend == 's3':
        return f's3://{config.s3_bucket}/{config.s3_prefix.strip("/")}'
    return str(config.store_dir)


def _s3_meta(config: Config) -> dict[str, Any] | None:
    from wsgi_store.backends.s3 import S3Backend

    # NOTE: check=False: the check writes the metadata into an empty prefix,
    # which a migration source must never get.
    probe = S3Backend.from_config(config, check=False)
    try:
        return probe.read_meta()
    except StoreMismatch as exc:
        raise MigrateError(f'{_where(config)}: {exc.detail}') from None
    finally:
        probe.close()


@dataclass
class MigrateSummary:
    """What a migration did."""

    copied: int = 0
    skipped: int = 0  # already on the target
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # hash -> reason

    @property
    def ok(self) -> bool:
        """True when every object is now on the target."""
        return self.failed == 0

    def __str__(self) -> str:
        return f'{self.copied} copied, {self.skipped} skipped, {self.failed} failed'


def migrate(
    source: Backend, target: Backend, *, progress: bool = True
) -> MigrateSummary:
    """Copy every object of ``source`` missing on ``target``.

    Args:
        source: the backend read from (never changed).
        target: the backend written to; must use the same hash algorithm.
        progress: show a tqdm progress bar (objects) on stderr.

    Returns:
        The counts, with the reason of each failure.

    Raises:
        StoreMismatch: the two stores use different hash algorithms.
        BackendUnavailable: either store stopped answering (rerun to finish).
    """
    if source.algorithm != target.algorithm:
        raise StoreMismatch(
            f'cannot migrate a {source.algorithm} store into a {target.algorithm} '
            'store: object names would not match their content'
        )
    from tqdm import tqdm

    summary = MigrateSummary()
    hashes = tqdm(source.iter_hashes(), unit='obj', disable=not progress)
    for hex_hash in hashes:
        outcome = _migrate_one(source, target, hex_hash)
        if outcome == 'copied':
            summary.copied += 1
        elif outcome == 'skipped':
            summary.skipped += 1
        else:
            summary.failed += 1
            summary.failures[hex_hash] = outcome
            logger.error('not migrated: %s: %s', hex_hash, outcome)
        hashes.set_postfix_str(str(summary), refresh=False)
    logger.info('migration from %s to %s: %s', source.name, target.name, summary)
    return summary


def _migrate_one(source: Backend, target: Backend, hex_hash: str) -> str:
    """Copy one object; return 'copied', 'skipped' or why it failed."""
    try:
        if target.exists(hex_hash):
            return 'skipped'
        size = source.stat(hex_hash).size
        with source.open(hex_hash) as body:
            staged = target.stage(body, length=size)
        try:
            if staged.hash != hex_hash:
                return f'corrupt on the source: its bytes hash to {staged.hash}'
            target.commit(staged)
        finally:
            if not staged.done:
                target.discard(staged)
    except BackendUnavailable:
        raise  # every next object would fail too: stop, rerun later
    except StoreError as exc:
        return f'{type(exc).__name__}: {exc.detail}'
    except OSError as exc:
        return f'{type(exc).__name__}: {exc}'
    return 'copied'
