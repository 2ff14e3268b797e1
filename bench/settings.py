"""How much to measure: the quick mode (the test suite) and the full mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run's sizes and repetitions."""

    mode: str
    rounds: int  # each round restarts gunicorn and measures every pair once
    seconds: int  # one wrk run
    conns: tuple[int, ...]
    large: int  # the "100 MiB" object
    huge: int  # the "1 GiB" transfer of the RSS check
    preload: int  # objects in the "1,000,000 objects" store
    targets: int  # distinct 1 KiB objects the latency check cycles over
    cache: Path  # where the preloaded store is kept between runs
    s3_big: int = 100 * MiB  # the large object of the S3 rows
    budget: float = 280.0  # seconds; cells that would pass it are not run

    @property
    def large_label(self) -> str:
        return size_label(self.large)

    @property
    def huge_label(self) -> str:
        return size_label(self.huge)

    @property
    def s3_big_label(self) -> str:
        return size_label(self.s3_big)


def size_label(size: int) -> str:
    """``104857600`` -> ``'100 MiB'``."""
    for unit, name in ((GiB, 'GiB'), (MiB, 'MiB'), (KiB, 'KiB')):
        if size >= unit and size % unit == 0:
            return f'{size // unit} {name}'
    return f'{size} B'


def quick(cache: Path) -> Settings:
    """Every scenario once, for about a second, at 8 connections (~30 s)."""
    return Settings(
        mode='quick',
        rounds=1,
        seconds=1,
        conns=(8,),
        large=4 * MiB,
        huge=64 * MiB,
        preload=2_000,
        targets=100,
        cache=cache,
        s3_big=20 * MiB,  # above one 16 MiB part: still a multipart upload
    )


def full(cache: Path) -> Settings:
    """Three rounds at 1, 8 and 64 connections (under 5 minutes)."""
    return Settings(
        mode='full',
        rounds=3,
        seconds=1,
        conns=(1, 8, 64),
        large=100 * MiB,
        huge=GiB,
        preload=1_000_000,
        targets=1000,
        cache=cache,
    )
