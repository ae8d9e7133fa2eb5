"""`broker bench`: start the services, run each scenario's load process, report.

The orchestration: one database and one agent service for the whole
benchmark; a broker started per configuration (latency runs with
`BROKER_FLUSH_INTERVAL_MS=0` and with the default, on brokers of their
own); for each broker, a load process (`broker.bench.load`) fed its `Job`s on
stdin, whose repetitions come back as JSON. The table goes to the
terminal, the JSON to `--json FILE` if asked. The exit code is 1 when any
viewer saw a duplicate, a gap or a missing end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from broker.bench.cluster import Cluster, Services
from broker.bench.job import Job
from broker.bench.load import raise_file_limit
from broker.bench.plan import SCENARIOS, Mode, Plan, plan_for
from broker.bench.report import Report, machine
from broker.bench.stats import Figures, summarize

__all__ = ["run_bench"]

_DEFAULT_FLUSH_MS = 100
_LOAD_TIMEOUT_S = 1800


def _jobs_for(names: Sequence[str], plan: Plan, flush_ms: int) -> list[tuple[str, str, int]]:
    """(label, scenario, param) to run on a broker flushing every `flush_ms`."""
    jobs: list[tuple[str, str, int]] = []
    if "latency" in names and flush_ms in plan.flush_intervals_ms:
        jobs.append((f"latency, flush {flush_ms} ms", "latency", 0))
    if flush_ms != min(plan.flush_intervals_ms):
        return jobs
    if "direct" in names:
        jobs.append(("direct pipe", "direct", 0))
    return jobs


def _default_jobs(names: Sequence[str], plan: Plan) -> list[tuple[str, str, int]]:
    jobs: list[tuple[str, str, int]] = []
    # Idle viewers first: on a fresh broker, RSS growth is not hidden by memory freed earlier.
    for name in ("idle", "ingest", "fanout", "catchup", "cancel"):
        if name not in names:
            continue
        if name == "fanout":
            jobs += [(f"fan-out, {v:,} viewers", name, v) for v in plan.fanout_viewers]
        elif name == "catchup":
            jobs.append((f"catch-up, {plan.catchup_events:,} events", name, 0))
        elif name == "idle":
            jobs.append((f"idle viewers, {plan.idle_viewers:,}", name, 0))
        else:
            jobs.append((name, name, 0))
    return jobs


def _run_load(jobs: list[Job]) -> list[list[Figures]]:
    """One load process for `jobs`; per job, its repetitions' figures."""
    done = subprocess.run(
        [sys.executable, "-m", "broker.bench.load"],
        input=json.dumps([job.to_json() for job in jobs]),
        stdout=subprocess.PIPE,
        text=True,
        timeout=_LOAD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load process failed (exit {done.returncode}); see above")
    return [[Figures.from_json(item) for item in job] for job in json.loads(done.stdout)]


def _measure(
    report: Report,
    cluster: Cluster,
    services: Services,
    plan: Plan,
    jobs: list[tuple[str, str, int]],
) -> None:
    secret = cluster.settings.require(cluster.settings.local_secret, "BROKER_LOCAL_SECRET")
    batch = [
        Job(
            scenario=scenario,
            label=label,
            plan=plan,
            broker_url=services.broker_url,
            agent_url=services.agent_url,
            broker_pid=services.broker_pid,
            token=cluster.token,
            local_secret=secret,
            database_url=cluster.database_url,
            param=param,
        )
        for label, scenario, param in jobs
    ]
    for job, results in zip(batch, _run_load(batch), strict=True):
        report.rows += summarize(job.label, results)
        for figures in results:
            report.violations += [f"{job.label}: {v}" for v in figures.violations]
            if figures.note:
                report.notes[job.label] = figures.note


def run_bench(names: Sequence[str], mode: Mode, json_path: Path | None, console: Console) -> int:
    """Run the scenarios `names` in `mode`; print the table; 1 if exactly-once failed."""
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    plan = plan_for(mode)
    raise_file_limit()
    with Cluster.open() as cluster:
        report = Report(
            machine(),
            cluster.postgres_version,
            {
                "mode": mode,
                "repetitions": plan.repetitions,
                "database": "DATABASE_URL" if cluster.external else "embedded",
                "encryption": "on",
                "event size (B)": plan.event_size,
            },
        )
        flushes = sorted({*plan.flush_intervals_ms, _DEFAULT_FLUSH_MS})
        with cluster.agent() as agent_url:
            for flush_ms in flushes:
                jobs = _jobs_for(names, plan, flush_ms)
                if flush_ms == _DEFAULT_FLUSH_MS:
                    others = _default_jobs(names, plan)
                    jobs = others[:1] + jobs + others[1:] if "idle" in names else jobs + others
                if not jobs:
                    continue
                extra = {"BROKER_FLUSH_INTERVAL_MS": str(flush_ms)}
                with cluster.broker(agent_url, extra) as services:
                    _measure(report, cluster, services, plan, jobs)
    report.order()
    report.add_ratios()
    report.print(console)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.violations else 0
