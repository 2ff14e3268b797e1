"""What every scenario gets: the lab, the settings, and where samples go."""

from __future__ import annotations

import collections
import dataclasses
import secrets
from pathlib import Path

from . import wrk
from .lab import Lab
from .settings import Settings


@dataclasses.dataclass
class Context:
    """Samples are lists keyed by name; index i of every list is round i."""

    lab: Lab
    settings: Settings
    samples: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    objects: dict[str, str] = dataclasses.field(default_factory=dict)
    nonce: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))
    round_no: int = 0

    @property
    def work(self) -> Path:
        return self.lab.work

    def add(self, key: str, value: float) -> None:
        self.samples[key].append(value)

    def note(self, key: str, text: str) -> None:
        old = self.notes.get(key, '')
        if text not in old:
            self.notes[key] = f'{old}; {text}' if old else text

    def lua(self, *parts: str) -> Path:
        return wrk.script(self.work, *parts)

    def wrk(
        self, url: str, conns: int, lua: Path, args: tuple[str, ...] = (), key: str = ''
    ) -> wrk.WrkResult:
        """Run wrk for the configured time; note errors under ``key``."""
        result = wrk.run(url, conns, self.settings.seconds, lua, args)
        errors = result.connect + result.read + result.write + result.timeout
        if key and (errors or result.status):
            self.note(key, f'errors: {errors} socket, {result.status} status')
        return result
