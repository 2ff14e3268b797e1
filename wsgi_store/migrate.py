"""Copy every object one backend has and another lacks, verifying each hash.

Used by ``filestorectl migrate --from fs:DIR --to s3`` (and back). Each object is
streamed from the source into the target's two-phase write: staged (hashed while
copied), compared with its name, and committed only when they match; a corrupt
source object is reported and left out. Objects already on the target are
skipped, so an interrupted migration is finished by running it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .backends.base import Backend
from .errors import BackendUnavailable, StoreError, StoreMismatch

logger = logging.getLogger(__name__)


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
