"""A job for the load process: where the services are, what to run, how big."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from broker.bench.plan import Plan

__all__ = ["Job"]


@dataclass(frozen=True, slots=True)
class Job:
    """One scenario's repetitions against running services (`param`: e.g. viewers)."""

    scenario: str
    label: str
    plan: Plan
    broker_url: str
    agent_url: str
    broker_pid: int
    token: str
    local_secret: str
    database_url: str
    param: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        plan = data["plan"]
        plan["fanout_viewers"] = tuple(plan["fanout_viewers"])
        plan["flush_intervals_ms"] = tuple(plan["flush_intervals_ms"])
        return cls(**{**data, "plan": Plan(**plan)})
