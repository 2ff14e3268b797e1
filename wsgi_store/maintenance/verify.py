"""The verify engine: re-hash every object of a backend, report and quarantine.

:func:`verify_backend` works on any backend through the
:class:`~wsgi_store.backends.base.Backend` contract (``iter_hashes``, streaming
``open``, ``quarantine``); the filesystem backend additionally gets a scan for
entries that are not objects at all (misnamed files, wrong shard).
``filestorectl verify`` is :func:`wsgi_store.maintenance.tasks.verify`.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from tqdm import tqdm

from wsgi_store.backends import Backend
from wsgi_store.backends.base import hash_stream
from wsgi_store.config import human_bytes
from wsgi_store.errors import NotFound, StoreError
from wsgi_store.hashing import hex_length, is_object_name

Say = Callable[[str], None]


# -- the report ----------------------------------------------------------------------
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
    skip = _check_layout(backend, report, repair, say)
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
        with backend.open(name) as f:
            actual, size = hash_stream(f, backend.algorithm)
            report.checked += 1
            report.bytes += size
            if actual != name:
                report.corrupt.append(name)
                say(f'CORRUPT {name}: its bytes hash to {actual}')
                if repair:
                    _quarantine_checked(backend, name, f, report, say)
    except NotFound:
        report.vanished += 1
    except OSError as exc:
        report.unreadable.append(name)
        say(f'UNREADABLE {name}: {exc} (left in place)')


def _quarantine_checked(
    backend: Backend, name: str, f: IO[bytes], report: VerifyReport, say: Say
) -> None:
    """Quarantine the file just hashed (still open as ``f``), never a good copy
    a client uploaded under the name meanwhile."""
    try:
        where = backend.quarantine_checked(name, f)
    except OSError as exc:
        raise QuarantineError(f'cannot quarantine {name}: {exc}') from exc
    if where is None:
        say('  replaced by a new upload meanwhile: left in place')
    else:
        report.quarantined.append(where)
        say(f'  moved to {where}')


class QuarantineError(StoreError):
    """Moving a corrupt object aside failed (not a read error of the object)."""


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
    with backend.open(hex_hash) as f:
        return hash_stream(f, backend.algorithm, chunk)


def _is_hash(name: str, backend: Backend) -> bool:
    return is_object_name(name, hex_length(backend.algorithm))


def _check_layout(
    backend: Backend, report: VerifyReport, repair: bool, say: Say
) -> Counter[str]:
    """Report entries that are not objects; return the names to skip.

    ``iter_hashes`` still yields such an entry when its name has a hash's
    length, so those names are returned for the main loop to skip once each.
    """
    skip: Counter[str] = Counter()
    for problem in backend.layout_problems():
        report.misnamed.append(problem.where)
        say(f'MISNAMED {problem.where}: {problem.reason}')
        if len(problem.name) == hex_length(backend.algorithm):
            skip[problem.name] += 1
        if repair:
            where = backend.quarantine_entry(problem)
            report.quarantined.append(where)
            say(f'  moved to {where}')
    return skip
