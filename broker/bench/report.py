"""The report: the machine, PostgreSQL, the settings, one table and the JSON.

The table has one row per scenario figure: median over the repetitions, with
min and max. The latency rows through the broker are also given as a ratio
of the direct pipe's (same percentile, same flush setting's run). Exactly-
once violations are listed after the table, loudly; so are notes such as
"n/a: no cancel route".
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from broker.bench.stats import Row

__all__ = ["Report", "machine"]


def machine() -> dict[str, Any]:
    """CPU count and model, OS and Python of this machine."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "system": platform.platform(),
        "python": platform.python_version(),
    }


_ORDER = ("latency, flush 0", "direct", "latency", "ingest", "fan-out", "catch-up", "idle")


def _rank(scenario: str) -> int:
    return next((i for i, p in enumerate(_ORDER) if scenario.startswith(p)), len(_ORDER))


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass(slots=True)
class Report:
    """Everything measured, ready to print and to write as JSON."""

    machine: dict[str, Any]
    postgres: str
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def order(self) -> None:
        """Rows in the order of design section 8, whatever order they ran in."""
        self.rows.sort(key=lambda row: _rank(row.scenario))

    def add_ratios(self) -> None:
        """`latency p50/p99 ÷ direct` rows (medians' ratio), after the rows they divide."""
        direct = {r.figure: r for r in self.rows if r.scenario == "direct pipe"}
        rows: list[Row] = []
        for row in self.rows:
            rows.append(row)
            base = direct.get(row.figure)
            if not row.scenario.startswith("latency") or row.figure.endswith("max"):
                continue
            if base is not None and base.median > 0 and math.isfinite(base.median):
                ratio = row.median / base.median
                figure = f"{row.figure} / direct"
                rows.append(Row(row.scenario, figure, "x", ratio, ratio, ratio, (ratio,)))
        self.rows = rows

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "postgres": self.postgres,
            "settings": self.settings,
            "results": [row.to_json() for row in self.rows],
            "notes": self.notes,
            "violations": self.violations,
            "exactly_once": not self.violations,
        }

    def print(self, console: Console) -> None:
        info = self.machine
        console.print(
            f"machine: {info['cpu_count']} CPUs, {info['cpu_model']}; {info['system']}; "
            f"Python {info['python']}; PostgreSQL {self.postgres}"
        )
        console.print("settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        table = Table(title="broker bench: median of n repetitions, with min and max")
        for column in ("scenario", "figure", "median", "min", "max", "unit", "n"):
            right = column in {"median", "min", "max", "n"}
            table.add_column(column, justify="right" if right else "left", no_wrap=True)
        for row in self.rows:
            table.add_row(
                row.scenario,
                row.figure,
                _number(row.median),
                _number(row.low),
                _number(row.high),
                row.unit,
                str(len(row.values)),
            )
        for scenario, note in self.notes.items():
            table.add_row(scenario, note, "", "", "", "", "")
        console.print(table)
        if self.violations:
            console.print(f"[bold red]EXACTLY-ONCE VIOLATED ({len(self.violations)}):[/]")
            for violation in self.violations[:20]:
                console.print(f"[red]  {violation}[/]")
        else:
            console.print("exactly-once: held for every viewer of every scenario")
