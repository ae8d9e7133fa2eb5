"""What `broker bench` runs: the scenarios, and their sizes in each mode.

Three modes: `full` (the figures for docs/BENCHMARKS.md, minutes), `quick`
(under a minute, small sizes) and `tiny` (the test suite's smoke run: the
shapes and the exactly-once checks, no meaningful timing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["SCENARIOS", "Mode", "Plan", "plan_for"]

Mode = Literal["tiny", "quick", "full"]

SCENARIOS = ("latency", "direct", "ingest", "fanout", "catchup", "idle", "cancel")
"""In running order; `latency` runs twice (flush interval 0 and the default)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of every scenario; rates in events per second, sizes in bytes."""

    mode: Mode
    repetitions: int = 3
    latency_events: int = 100
    latency_rate: float = 20.0
    event_size: int = 64
    ingest_runs: int = 50
    ingest_events: int = 2_000
    ingest_rate: float = 5_000.0
    healthz_interval_s: float = 0.02
    fanout_viewers: tuple[int, ...] = (100, 1_000, 2_000, 5_000)
    fanout_rate: float = 20.0
    fanout_measure_s: float = 5.0
    catchup_events: int = 10_000
    idle_viewers: int = 1_000
    flush_intervals_ms: tuple[int, ...] = (0, 100)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_for(mode: Mode) -> Plan:
    """The sizes of `mode`."""
    if mode == "full":
        return Plan(mode)
    if mode == "quick":
        return Plan(
            mode,
            latency_events=20,
            ingest_runs=10,
            ingest_events=500,
            fanout_viewers=(100,),
            fanout_measure_s=1.0,
            catchup_events=2_000,
            idle_viewers=200,
        )
    return Plan(
        mode,
        latency_events=5,
        latency_rate=50.0,
        ingest_runs=3,
        ingest_events=30,
        ingest_rate=1_000.0,
        fanout_viewers=(5,),
        fanout_measure_s=0.3,
        catchup_events=50,
        idle_viewers=5,
    )
