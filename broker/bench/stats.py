"""Figures: percentiles of one repetition, and the summary of several repetitions.

A scenario's repetition yields `Figures`: named numbers (milliseconds,
events per second, bytes ...) and the exactly-once violations it saw.
`summarize` folds the repetitions of a scenario into rows of median, min
and max per figure, in the order the figures were first reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figures", "Row", "percentile", "summarize"]


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (0..100) by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class Figures:
    """One repetition's figures: name → (value, unit), and exactly-once violations."""

    values: dict[str, tuple[float, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    note: str | None = None

    def add(self, name: str, value: float, unit: str) -> None:
        self.values[name] = (float(value), unit)

    def add_spread(self, name: str, samples: Sequence[float], unit: str) -> None:
        """`name p50`, `name p99` and `name max` of `samples`."""
        self.add(f"{name} p50", percentile(samples, 50), unit)
        self.add(f"{name} p99", percentile(samples, 99), unit)
        self.add(f"{name} max", max(samples) if samples else math.nan, unit)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": {name: [value, unit] for name, (value, unit) in self.values.items()},
            "violations": self.violations,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        values = {name: (float(pair[0]), str(pair[1])) for name, pair in data["values"].items()}
        return cls(values, list(data["violations"]), data.get("note"))


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a scenario's figure over its repetitions."""

    scenario: str
    figure: str
    unit: str
    median: float
    low: float
    high: float
    values: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "figure": self.figure,
            "unit": self.unit,
            "median": _finite(self.median),
            "min": _finite(self.low),
            "max": _finite(self.high),
            "repetitions": [_finite(v) for v in self.values],
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summarize(scenario: str, repetitions: Sequence[Figures]) -> list[Row]:
    """Median, min and max of each figure over the repetitions that reported it."""
    names: dict[str, str] = {}
    for figures in repetitions:
        for name, (_, unit) in figures.values.items():
            names.setdefault(name, unit)
    rows: list[Row] = []
    for name, unit in names.items():
        values = tuple(f.values[name][0] for f in repetitions if name in f.values)
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            median, low, high = statistics.median(finite), min(finite), max(finite)
        else:
            median = low = high = math.nan
        rows.append(Row(scenario, name, unit, median, low, high, values))
    return rows
