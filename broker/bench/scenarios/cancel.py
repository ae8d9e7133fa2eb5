"""Cancel latency: Stop pressed (`POST /api/runs/{id}/cancel`) → `cancelled` seen by a viewer.

Measured only if the broker has the route. Without it the answer is a 404
(or 405) for a run that exists, and the scenario reports
"n/a: no cancel route" instead of a figure; the run is then left to finish
and its viewer must still have received every event exactly once.
"""

from __future__ import annotations

import asyncio

from broker.bench.client import (
    Api,
    Viewer,
    bench_message,
    exactly_once,
    http_client,
    now_us,
    poll,
)
from broker.bench.job import Job
from broker.bench.stats import Figures

__all__ = ["NO_ROUTE", "cancel_latency"]

NO_ROUTE = "n/a: no cancel route"


async def cancel_latency(job: Job) -> Figures:
    plan = job.plan
    figures = Figures()
    events = max(10, int(plan.latency_rate))  # about a second of events
    async with http_client(job.broker_url, connections=4, token=job.token) as client:
        run_id = await Api(client).start_run(bench_message(events, plan.latency_rate, 64))
        viewer = Viewer(client, f"/api/runs/{run_id}/events")
        reader = asyncio.create_task(viewer.read())

        async def streaming() -> bool:
            return len(viewer.reception.seqs) >= 2 or reader.done()

        await poll(streaming, 0.01)
        pressed_us = now_us()
        answer = await client.post(f"/api/runs/{run_id}/cancel")
        reception = await reader
    if answer.status_code in (404, 405):
        figures.note = NO_ROUTE
    elif reception.terminal == "cancelled":
        figures.add("cancel seen", (reception.received_us[-1] - pressed_us) / 1000, "ms")
    else:
        figures.note = f"the run ended {reception.terminal} (cancel answered {answer.status_code})"
    figures.violations += exactly_once(reception, f"run {run_id}")
    return figures
