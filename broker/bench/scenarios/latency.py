"""Latency: one run, one viewer, 20 events/s — emit to receive, through the broker or not.

`through_broker` measures the agent's emit time (in the event's text) to the
SSE viewer's receipt, the viewer having subscribed right after starting the
run; events emitted before its answer started are left out (they measure
the connection, not the broker). `direct_pipe` reads the agent's own stream
straight, the baseline the broker's overhead is a ratio of.
"""

from __future__ import annotations

from broker.bench.client import (
    Api,
    Viewer,
    bench_message,
    exactly_once,
    http_client,
    now_us,
    read_direct,
)
from broker.bench.job import Job
from broker.bench.stats import Figures

__all__ = ["direct_pipe", "through_broker"]


async def through_broker(job: Job) -> Figures:
    plan = job.plan
    figures = Figures()
    message = bench_message(plan.latency_events, plan.latency_rate, plan.event_size)
    async with http_client(job.broker_url, connections=4, token=job.token) as client:
        run_id = await Api(client).start_run(message)
        viewer = Viewer(client, f"/api/runs/{run_id}/events")
        connected_us: list[int] = []
        reception = await viewer.read(connected=lambda: connected_us.append(now_us()))
    figures.add_spread("latency", reception.latencies_ms(since_us=connected_us[0]), "ms")
    figures.violations += exactly_once(reception, f"run {run_id}")
    return figures


async def direct_pipe(job: Job) -> Figures:
    plan = job.plan
    figures = Figures()
    message = bench_message(plan.latency_events, plan.latency_rate, plan.event_size)
    reception = await read_direct(job.agent_url, job.local_secret, message)
    figures.add_spread("latency", reception.latencies_ms(), "ms")
    figures.violations += exactly_once(reception, "direct pipe")
    return figures
