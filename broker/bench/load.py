"""The load generator: a process of its own that runs one scenario's repetitions.

`python -m broker.bench.load` reads a JSON list of `Job`s on stdin, runs
each scenario `plan.repetitions` times (once for `cancel` when the route is
missing), and writes, per job, the repetitions' `Figures` as one JSON list
on stdout; progress goes to stderr.
Running apart from the orchestrator and the broker keeps the clients' CPU
out of the broker's figures.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from collections.abc import Awaitable, Callable

from broker.bench.job import Job
from broker.bench.scenarios.cancel import NO_ROUTE, cancel_latency
from broker.bench.scenarios.catchup import CatchUp
from broker.bench.scenarios.fanout import Fanout
from broker.bench.scenarios.idle import IdleViewers
from broker.bench.scenarios.ingest import ingest
from broker.bench.scenarios.latency import direct_pipe, through_broker
from broker.bench.stats import Figures

__all__ = ["main", "raise_file_limit", "repetitions"]

Repetition = Callable[[Job], Awaitable[Figures]]


def raise_file_limit() -> None:
    """Allow as many open sockets as the hard limit does (thousands of viewers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _scenario(name: str) -> Repetition:
    table: dict[str, Repetition] = {
        "latency": through_broker,
        "direct": direct_pipe,
        "ingest": ingest,
        "fanout": Fanout(),
        "catchup": CatchUp(),
        "idle": IdleViewers(),
        "cancel": cancel_latency,
    }
    return table[name]


async def repetitions(job: Job) -> list[Figures]:
    """The scenario's figures, one per repetition."""
    repetition = _scenario(job.scenario)
    results: list[Figures] = []
    try:
        for _ in range(job.plan.repetitions):
            try:
                figures = await repetition(job)
            except Exception as exc:
                # One broken scenario must not cost the figures of all the others.
                results.append(Figures(violations=[f"{job.label} failed: {exc!r}"]))
                break
            results.append(figures)
            if figures.note == NO_ROUTE:
                break
    finally:
        if isinstance(repetition, IdleViewers):
            await repetition.aclose()
    return results


async def _all(jobs: list[Job]) -> list[list[Figures]]:
    results: list[list[Figures]] = []
    for job in jobs:
        print(f"running {job.label} ...", file=sys.stderr, flush=True)
        results.append(await repetitions(job))
    return results


def main() -> None:
    raise_file_limit()
    jobs = [Job.from_json(item) for item in json.load(sys.stdin)]
    results = asyncio.run(_all(jobs))
    json.dump([[figures.to_json() for figures in job] for job in results], sys.stdout)


if __name__ == "__main__":
    main()
