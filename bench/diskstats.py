"""Device flushes of the disk under a directory, from ``/sys/dev/block/M:m/stat``.

Field 16 of the block stat file (Linux >= 5.5) counts completed flush requests:
what a durable write really costs the disk. Older kernels lack it, and some
virtual disks never see a flush request (the raw fsync loop then shows none);
write completions (field 5) are the fallback the table uses then. A directory on
tmpfs or an overlay without a block device has no counter (``None``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

_FLUSHES, _WRITES = 14, 4  # zero-based fields of the stat file


@dataclasses.dataclass(frozen=True)
class Counter:
    """Reads one device's flush and write-completion counts."""

    stat: Path
    has_flushes: bool

    def read(self) -> tuple[int, int]:
        """(flushes completed, writes completed); flushes 0 when not counted."""
        fields = self.stat.read_text().split()
        flushes = int(fields[_FLUSHES]) if self.has_flushes else 0
        return flushes, int(fields[_WRITES])


def counter_for(path: Path) -> Counter | None:
    """The counter of the block device holding ``path``, or None."""
    dev = os.stat(path).st_dev
    stat = Path(f'/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat')
    try:
        fields = stat.read_text().split()
    except OSError:
        return None
    return Counter(stat, len(fields) > _FLUSHES) if len(fields) > _WRITES else None
