"""Catch-up: a new viewer of a finished run of many events — time to receive all of it.

The run is produced once per load process (not timed), as fast as the
agent emits; each repetition is one new SSE viewer from the first event. The time is to the
stream's last byte: the viewer parses and checks what it got afterwards, so the
load process's own SSE parsing (Python, ~10 µs an event) is not counted as the
broker's.
"""

from __future__ import annotations

from broker.bench.client import Api, Viewer, bench_message, exactly_once, http_client, poll
from broker.bench.job import Job
from broker.bench.stats import Figures

__all__ = ["CatchUp"]


class CatchUp:
    """The finished run, made on first use and read by every repetition."""

    def __init__(self) -> None:
        self._run_id: str | None = None

    async def _finished_run(self, api: Api, job: Job) -> str:
        if self._run_id is None:
            size = job.plan.event_size
            run_id = await api.start_run(bench_message(job.plan.catchup_events, 1e6, size))

            async def finished() -> bool:
                return (await api.run_state(run_id))["finished_at"] is not None

            await poll(finished, 0.05)
            self._run_id = run_id
        return self._run_id

    async def __call__(self, job: Job) -> Figures:
        figures = Figures()
        async with http_client(job.broker_url, connections=4, token=job.token) as client:
            run_id = await self._finished_run(Api(client), job)
            reception = await Viewer(client, f"/api/runs/{run_id}/events").read_through()
        seconds = (reception.finished_us - reception.opened_us) / 1e6
        figures.add("receive all", seconds * 1000, "ms")
        figures.add("throughput", len(reception.seqs) / seconds, "ev/s")
        figures.violations += exactly_once(reception, f"run {run_id}")
        if len(reception.seqs) != job.plan.catchup_events + 2:
            figures.violations.append(f"run {run_id}: got {len(reception.seqs)} events")
        return figures
