"""Measuring the broker from outside: its process's CPU and memory, the database's work.

Linux `/proc` is read directly (no extra dependency): CPU is utime+stime in
clock ticks, memory the resident set (`VmRSS`). The database's work is the
transaction and row counters of `pg_stat_database` for the broker's
database (`pg_stat_statements` needs a preloaded library the embedded
server does not have); statistics are flushed by the server at most once a
second, so rates are taken over windows of a second or more.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx

from broker.integrations.querying import asyncpg_dsn

__all__ = ["CpuClock", "DatabaseCounters", "HealthPinger", "rss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """The resident set of process `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuClock:
    """The share of one core process `pid` used since `start()` (1.0 = one full core)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._cpu = 0.0
        self._wall = 0.0

    def start(self) -> None:
        self._cpu, self._wall = _cpu_seconds(self._pid), time.monotonic()

    def share(self) -> float:
        wall = time.monotonic() - self._wall
        return (_cpu_seconds(self._pid) - self._cpu) / wall if wall > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    xacts: int
    rows: int


class DatabaseCounters:
    """Transactions and rows touched per second in the broker's database."""

    def __init__(self, database_url: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._first: _Sample | None = None

    async def _sample(self) -> _Sample:
        conn: Any = await asyncpg.connect(self._dsn)
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(
                "SELECT xact_commit + xact_rollback AS xacts,"
                " tup_returned + tup_fetched + tup_inserted + tup_updated + tup_deleted AS rows"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            await conn.close()
        return _Sample(time.monotonic(), int(row["xacts"]), int(row["rows"]))

    async def start(self) -> None:
        self._first = await self._sample()

    async def rates(self) -> tuple[float, float]:
        """(transactions/s, rows/s) since `start()`; the probe's own two count as noise."""
        assert self._first is not None
        last = await self._sample()
        wall = last.at - self._first.at
        if wall <= 0:
            return 0.0, 0.0
        return (last.xacts - self._first.xacts) / wall, (last.rows - self._first.rows) / wall


class HealthPinger:
    """`GET /healthz` every `interval_s` while running: the broker's event-loop stall."""

    def __init__(self, base_url: str, interval_s: float) -> None:
        self._base_url = base_url
        self._interval_s = interval_s
        self.times_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        async with httpx.AsyncClient(base_url=self._base_url, timeout=30) as client:
            while True:
                begun = time.perf_counter()
                await client.get("/healthz")
                self.times_ms.append((time.perf_counter() - begun) * 1000)
                await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
