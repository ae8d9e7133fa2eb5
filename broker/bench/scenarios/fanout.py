"""Fan-out: one run at 20 events/s watched by V viewers.

The viewers subscribe from the first event once the run has started;
delivery latency counts only the events emitted after the last viewer's
answer started, so connecting is not mistaken for delivery (how long
connecting took is a figure of its own). The run is sized to last the
expected connection time plus the measuring window; if connecting takes
longer, the repetition is run again with a run sized by the time connecting
took (`Fanout`), and the note says so if it never sufficed. Broker CPU and the
database's transactions per second are taken over the measuring window;
"RSS growth per viewer" is the broker's RSS growth from before the
viewers connected, divided by V: a lower bound, since memory freed by
earlier scenarios is reused without growing the RSS (the idle scenario,
run first on a fresh broker, gives the memory figure). Every viewer must receive 1..N exactly once.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from broker.bench.client import (
    Api,
    Reception,
    bench_message,
    exactly_once,
    http_client,
    now_us,
)
from broker.bench.job import Job
from broker.bench.probes import CpuClock, DatabaseCounters, rss_bytes
from broker.bench.stats import Figures
from broker.bench.wire import WireViewer

__all__ = ["Fanout"]

_CONNECT_S_PER_VIEWER = 0.004
_CONNECT_SLACK_S = 0.5
_ATTEMPTS = 3


async def _attempt(job: Job, expected_connect_s: float) -> tuple[Figures, float, bool]:
    """One run watched by `job.param` viewers: figures, connecting time, long enough."""
    plan = job.plan
    viewers_wanted = job.param
    figures = Figures()
    events = math.ceil(plan.fanout_rate * (expected_connect_s + plan.fanout_measure_s))
    message = bench_message(events, plan.fanout_rate, plan.event_size)
    database = DatabaseCounters(job.database_url)
    cpu = CpuClock(job.broker_pid)
    async with http_client(job.broker_url, connections=8, token=job.token) as client:
        rss_before = rss_bytes(job.broker_pid)
        run_id = await Api(client).start_run(message)
        started_us = now_us()
        path = f"/api/runs/{run_id}/events"
        viewers = [WireViewer(job.broker_url, path, job.token) for _ in range(viewers_wanted)]
        connected = 0
        all_connected = asyncio.Event()

        def one_more() -> None:
            nonlocal connected
            connected += 1
            if connected == viewers_wanted:
                all_connected.set()

        readers = [asyncio.create_task(v.read(connected=one_more)) for v in viewers]
        await _connected_or_failed(all_connected, readers)
        connected_us = now_us()
        rss_connected = rss_bytes(job.broker_pid)
        cpu.start()
        await database.start()
        outcomes = await asyncio.gather(*readers, return_exceptions=True)
        share = cpu.share()
        xacts, rows = await database.rates()
    receptions = [r for r in outcomes if isinstance(r, Reception)]
    failed = [(i, r) for i, r in enumerate(outcomes) if isinstance(r, BaseException)]
    figures.violations += [f"viewer {i} of run {run_id} failed: {r!r}" for i, r in failed[:5]]
    if len(failed) > 5:
        figures.violations.append(f"... and {len(failed) - 5} more viewers failed")
    latencies = [ms for r in receptions for ms in r.latencies_ms(since_us=connected_us)]
    figures.add("connecting", (connected_us - started_us) / 1e6, "s")
    figures.add_spread("delivery", latencies, "ms")
    figures.add("broker CPU", share * 100, "% core")
    figures.add(
        "RSS growth per viewer", (rss_connected - rss_before) / viewers_wanted / 1024, "KiB"
    )
    figures.add("DB transactions", xacts, "1/s")
    figures.add("DB rows touched", rows, "1/s")
    measured = len(latencies) // max(1, viewers_wanted)
    enough = measured >= plan.fanout_rate * plan.fanout_measure_s / 2
    if not enough:
        figures.note = f"connecting took longer than planned: {measured} events measured per viewer"
    for index, reception in enumerate(receptions):
        figures.violations += exactly_once(reception, f"viewer {index} of run {run_id}")
    return figures, (connected_us - started_us) / 1e6, enough


async def _connected_or_failed(
    all_connected: asyncio.Event, readers: list[asyncio.Task[Reception]]
) -> None:
    """Until every viewer's answer started, or one viewer failed (it never will connect)."""
    waiter = asyncio.ensure_future(all_connected.wait())
    pending: set[asyncio.Future[Any]] = {waiter, *readers}
    try:
        while not all_connected.is_set():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task is not waiter and task.exception() is not None for task in done):
                return
    finally:
        waiter.cancel()


class Fanout:
    """Fan-out repetitions that size the run by how long connecting took last time.

    A repetition whose run ended before enough events followed the last
    connection is run again (up to `_ATTEMPTS` times) with a longer run; its
    exactly-once violations are kept either way.
    """

    def __init__(self) -> None:
        self._connect_s: dict[int, float] = {}

    async def __call__(self, job: Job) -> Figures:
        default = _CONNECT_SLACK_S + job.param * _CONNECT_S_PER_VIEWER
        violations: list[str] = []
        for _ in range(_ATTEMPTS):
            expected = self._connect_s.get(job.param, default)
            figures, took, enough = await _attempt(job, expected)
            violations += figures.violations
            self._connect_s[job.param] = max(expected, took * 1.5)
            if enough:
                break
        figures.violations = violations
        return figures
