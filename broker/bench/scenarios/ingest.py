"""Ingest: many concurrent runs at a high rate, stored durably by one broker process.

Events per second counts every event of every run from the first start to
the last run's terminal status (which commits with its last events), so it
is durable throughput. The end is the runs' own `finished_at` (the
database's clock, this machine's), so the states are polled seldom, and one
run at a time (they end together): polling all 50 runs every 20 ms had been
2,500 requests a second, and every 250 ms still 200 a second, a fifth of the
broker's busy time in a profile, counted against ingest. Flushes per second
come from the broker's own `broker_flushes_total`. The event-loop stall is
`GET /healthz`'s response time, sampled all along. Afterwards every run is
read back from the table and must hold run_started, each bench event once,
and complete.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx

from broker.bench.client import Api, Viewer, bench_message, exactly_once, http_client
from broker.bench.job import Job
from broker.bench.probes import CpuClock, HealthPinger
from broker.bench.stats import Figures
from models.status import TERMINAL_STATUSES

__all__ = ["ingest"]

_POLL_S = 0.25
"""How often the runs' states are asked for: seldom, so the polling is no load of its own."""


async def flushes_total(client: httpx.AsyncClient) -> float:
    """The broker's `broker_flushes_total` counter, from `/metrics`."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("broker_flushes_total "):
            return float(line.split()[1])
    return 0.0


async def _finished_at(api: Api, run_id: str) -> float:
    """When the run ended (the database's clock), asked every `_POLL_S` until it has."""
    while True:
        state = await api.run_state(run_id)
        if state["status"] in TERMINAL_STATUSES:
            return datetime.fromisoformat(state["finished_at"]).timestamp()
        await asyncio.sleep(_POLL_S)


async def ingest(job: Job) -> Figures:
    plan = job.plan
    figures = Figures()
    message = bench_message(plan.ingest_events, plan.ingest_rate, plan.event_size)
    async with http_client(
        job.broker_url, connections=plan.ingest_runs + 8, token=job.token
    ) as client:
        api = Api(client)
        pinger = HealthPinger(job.broker_url, plan.healthz_interval_s)
        cpu = CpuClock(job.broker_pid)
        flushes_before = await flushes_total(client)
        pinger.start()
        cpu.start()
        begun = time.time()
        run_ids = await asyncio.gather(*(api.start_run(message) for _ in range(plan.ingest_runs)))
        finished = [await _finished_at(api, run_id) for run_id in run_ids]
        elapsed = max(finished) - begun
        share = cpu.share()
        await pinger.stop()
        flushes = await flushes_total(client) - flushes_before
        figures.add("events stored", plan.ingest_runs * plan.ingest_events / elapsed, "ev/s")
        figures.add("flushes", flushes / elapsed, "1/s")
        figures.add("broker CPU", share * 100, "% core")
        figures.add_spread("/healthz", pinger.times_ms, "ms")
        for run_id in run_ids:
            reception = await Viewer(client, f"/api/runs/{run_id}/events").read()
            figures.violations += exactly_once(reception, f"run {run_id}")
            if len(reception.seqs) != plan.ingest_events + 2:
                figures.violations.append(
                    f"run {run_id}: {len(reception.seqs)} events stored, "
                    f"expected {plan.ingest_events + 2}"
                )
    return figures
