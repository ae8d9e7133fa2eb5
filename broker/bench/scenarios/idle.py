"""Memory per idle viewer: the broker's RSS growth per connected, waiting viewer.

The run emits its first event and then nothing for longer than the
measurement, so every viewer is registered on the run's tail and idle. The
broker's `broker_viewers` gauge confirms they are all in before the RSS is
read; the viewers must have received 1..k in order, each once. Viewers of
earlier repetitions stay connected (see `IdleViewers`).
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from broker.bench.client import (
    Api,
    Reception,
    Viewer,
    bench_message,
    http_client,
    in_order,
    poll,
)
from broker.bench.job import Job
from broker.bench.probes import rss_bytes
from broker.bench.stats import Figures

__all__ = ["IdleViewers"]

_QUIET_RATE = 1 / 60  # the second event comes a minute later


async def _gauge(client: httpx.AsyncClient, name: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


class IdleViewers:
    """Adds `count` idle viewers per repetition and keeps them until `aclose()`.

    Viewers of earlier repetitions stay connected, so each repetition's RSS
    growth is new memory, not memory the previous one freed.
    """

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._client: httpx.AsyncClient | None = None
        self._readers: list[asyncio.Task[Reception]] = []

    async def __call__(self, job: Job) -> Figures:
        count = job.param or job.plan.idle_viewers
        if self._client is None:
            room = count * job.plan.repetitions + 8
            client = http_client(job.broker_url, connections=room, token=job.token)
            self._client = await self._stack.enter_async_context(client)
        client = self._client
        figures = Figures()
        baseline = await _gauge(client, "broker_viewers")
        run_id = await Api(client).start_run(bench_message(2, _QUIET_RATE, job.plan.event_size))
        rss_before = rss_bytes(job.broker_pid)
        viewers = [Viewer(client, f"/api/runs/{run_id}/events") for _ in range(count)]
        self._readers += [asyncio.create_task(v.read()) for v in viewers]

        async def all_registered() -> bool:
            return await _gauge(client, "broker_viewers") >= baseline + count

        async def all_caught_up() -> bool:
            return all(len(v.reception.seqs) >= 2 for v in viewers)

        await poll(all_registered, 0.05)
        await poll(all_caught_up, 0.05)
        rss_after = rss_bytes(job.broker_pid)
        figures.add("RSS per viewer", (rss_after - rss_before) / count / 1024, "KiB")
        for index, viewer in enumerate(viewers):
            figures.violations += in_order(viewer.reception, f"idle viewer {index} of run {run_id}")
        return figures

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._stack.aclose()
