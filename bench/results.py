"""Rows of the result table, their ratios against the limits, and the output files."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Row:
    """One figure beside its limit, from samples taken pair by pair.

    ``samples[i]`` and ``limit_samples[i]`` were measured next to each other in
    round ``i``; the ratio is the median of the per-round ratios. ``target`` is
    the ratio to reach: at least it (``at_most=False``) or at most it.
    """

    work: str
    system: str
    conns: int | None
    unit: str
    samples: list[float]
    limit: str
    limit_samples: list[float]
    target: float | None = None
    at_most: bool = False
    note: str = ''

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def limit_value(self) -> float | None:
        return statistics.median(self.limit_samples) if self.limit_samples else None

    @property
    def ratio(self) -> float | None:
        pairs = [
            a / b for a, b in zip(self.samples, self.limit_samples, strict=False) if b
        ]
        return statistics.median(pairs) if pairs else None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target if self.at_most else self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc.update(
            value=self.value,
            limit_value=self.limit_value,
            ratio=self.ratio,
            met=self.met,
        )
        return doc


def _num(value: float | None) -> str:
    if value is None:
        return '-'
    if abs(value) >= 100:
        return f'{value:,.0f}'
    return f'{value:.3g}' if abs(value) < 10 else f'{value:.1f}'


def _target(row: Row) -> str:
    if row.target is None:
        return ''
    mark = {True: 'met', False: '**MISSED**', None: '?'}[row.met]
    return f'{"≤" if row.at_most else "≥"} {row.target:g} {mark}'


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    """The table and the run's facts as Markdown."""
    lines = [
        f'# wsgi-store bench ({meta["mode"]}, {meta["rounds"]} round(s))',
        '',
        '| work | system | conns | figure | limit | limit figure | ratio | target |'
        ' note |',
        '|---|---|---:|---:|---|---:|---:|---|---|',
    ]
    for row in rows:
        conns = '' if row.conns is None else str(row.conns)
        lines.append(
            f'| {row.work} | {row.system} | {conns} | {_num(row.value)} {row.unit} | '
            f'{row.limit} | {_num(row.limit_value)} {row.unit} | {_num(row.ratio)} | '
            f'{_target(row)} | {row.note} |'
        )
    lines += ['', '| fact | value |', '|---|---|']
    lines += [f'| {key} | {value} |' for key, value in meta.items()]
    return '\n'.join(lines) + '\n'


def write(out_dir: Path, stem: str, rows: list[Row], meta: dict[str, Any]) -> Path:
    """Write ``stem.md`` and ``stem.json`` (and ``latest.*``); the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, meta)
    doc = json.dumps({'meta': meta, 'rows': [r.as_dict() for r in rows]}, indent=1)
    for name in (stem, 'latest'):
        (out_dir / f'{name}.md').write_text(text)
        (out_dir / f'{name}.json').write_text(doc + '\n')
    return out_dir / f'{stem}.md'
