"""Stop from any replica: a run produced by replica A, cancelled through replica B.

Real processes: two brokers (`broker serve`, replicas `a` and `b`) as
subprocesses sharing one PostgreSQL, and the agent service (the scripted
model) under uvicorn in this process, so the test can count the model's
calls and see the agent's cancel arrive. The run asks a data question of the
demo integration: the model would be called a second time after its tool
call, unless the cancel stops it first.

Every viewer, on A and on B, must end with `cancelled` by the member who
pressed Stop; the agent's cancel must have been called; the model must not
have been called after it. The cancel → `cancelled`-at-viewer latency is
printed as p50/p99 (never asserted): `CANCEL_RUNS=50 pytest -s
tests/e2e/test_cancel_replicas.py` measures 50 runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agents.app import create_app as create_agent_app
from agents.registry import Run, RunRegistry
from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings
from broker.integrations.demo import ensure_demo_integration
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import drop_demo
from tests.servers import free_port, serve

RUNS = int(os.environ.get("CANCEL_RUNS", "3"))
QUESTION = "How many orders were placed last month?"


@dataclass
class _Agent:
    """The agent service's models (one per run) and the cancels it received."""

    models: list[ScriptedChatModel] = field(default_factory=list)
    cancelled: dict[str, tuple[Run, int]] = field(default_factory=dict)
    """run id -> (the agent's run, model calls when its cancel arrived)."""

    def model(self, settings: AgentSettings) -> ScriptedChatModel:
        model = ScriptedChatModel(delay_ms=settings.agent_scripted_delay_ms)
        self.models.append(model)
        return model


@dataclass
class _Replica:
    name: str
    process: subprocess.Popen[bytes]
    http: httpx.AsyncClient
    log: Path


@contextlib.asynccontextmanager
async def _replicas(
    settings: Settings, tmp_path: Path, agent_url: str, ports: list[int], token: str
) -> AsyncIterator[list[_Replica]]:
    """`broker serve` on each port, on the test's database; killed on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "AGENT_"))}
    env.update(
        DATABASE_URL=str(settings.database_url),
        BROKER_SECRET=settings.require(settings.secret, "BROKER_SECRET"),
        BROKER_ENCRYPTION_KEYS=settings.require(settings.encryption_keys, "ENCRYPTION_KEYS"),
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        BROKER_DATA_DIR=str(tmp_path / "data"),
        BROKER_LOG_LEVEL="warning",
        AGENT_URL=agent_url,
    )
    replicas: list[_Replica] = []
    try:
        for name, port in zip("ab", ports, strict=True):
            log = tmp_path / f"{name}.log"
            process = _spawn(["serve", "--port", str(port)], env, log)
            http = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            replicas.append(_Replica(name, process, http, log))
        for replica in replicas:
            await _ready(replica)
        yield replicas
    finally:
        for replica in replicas:
            replica.process.kill()
            replica.process.wait(timeout=10)
            await replica.http.aclose()


def _spawn(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "broker.cli", *arguments],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _ready(replica: _Replica) -> None:
    deadline = time.monotonic() + 60
    while True:
        if replica.process.poll() is not None:
            raise RuntimeError(f"replica {replica.name} exited:\n{replica.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if (await replica.http.get("/healthz")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"replica {replica.name} not ready")
        await asyncio.sleep(0.1)


@dataclass
class _Viewer:
    events: list[dict[str, Any]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None


async def _view(replica: _Replica, run_id: str, viewer: _Viewer) -> None:
    """Follow the run on `replica` to its terminal event."""
    async with replica.http.stream(
        "POST", f"/api/runs/{run_id}/subscribe", json={"cursor": None}
    ) as response:
        assert response.status_code == 200
        async for frame in aiter_sse(response.aiter_bytes()):
            event = frame.json()
            viewer.events.append(event)
            if event["seq"] >= 2:
                viewer.started.set()
            if event["event_type"] in ("complete", "error", "cancelled"):
                viewer.ended_at = time.monotonic()
                return


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_a_cancel_sent_to_replica_b_stops_the_run_replica_a_produces(
    settings: Settings, store: Store, databases: TestDatabases, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_cancel_{suffix}", f"demo_cancel_reader_{suffix}"
    workspace_id = await store.ensure_workspace("acme")
    await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    secret = settings.require(settings.secret, "BROKER_SECRET")
    token = mint_token(secret, workspace_id, "alice")
    ports = [free_port(), free_port()]
    agent = _Agent()
    agent_app = create_agent_app(
        AgentSettings(
            BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
            BROKER_URL=f"http://127.0.0.1:{ports[0]}",
            ANTHROPIC_API_KEY=None,
            AGENT_SCRIPTED_DELAY_MS=20,
        ),
        model_factory=agent.model,
    )
    registry: RunRegistry = agent_app.state.registry
    cancel = registry.cancel

    def recording_cancel(run_id: str, by: str) -> Run:
        run = cancel(run_id, by)
        agent.cancelled.setdefault(run_id, (run, agent.models[-1].calls))
        return run

    registry.cancel = recording_cancel  # type: ignore[method-assign]
    latencies: list[float] = []
    try:
        async with (
            serve(agent_app) as agent_url,
            _replicas(settings, tmp_path, agent_url, ports, token) as (a, b),
        ):
            thread = (await a.http.post("/api/threads", json={"title": "stop"})).json()
            # One thread: each run starts once the one before was cancelled (none left busy).
            for _ in range(RUNS):
                started = await a.http.post(
                    f"/api/threads/{thread['thread_id']}/runs", json={"message": QUESTION}
                )
                assert started.status_code == 202, started.text
                run_id = started.json()["run_id"]
                viewers = [_Viewer(), _Viewer()]
                watching = [
                    asyncio.create_task(_view(replica, run_id, viewer))
                    for replica, viewer in zip((a, b), viewers, strict=True)
                ]
                # Both viewers see the run live (its reasoning has begun) before Stop.
                await asyncio.wait_for(asyncio.gather(*(v.started.wait() for v in viewers)), 30)
                pressed = time.monotonic()
                answer = await b.http.post(f"/api/runs/{run_id}/cancel")
                await asyncio.wait_for(asyncio.gather(*watching), 30)
                latencies += [(v.ended_at or pressed) - pressed for v in viewers]

                assert answer.status_code == 202, answer.text
                assert answer.json() == {"run_id": run_id, "status": "streaming"}
                for viewer in viewers:
                    assert viewer.events[-1]["event_type"] == "cancelled"
                    assert viewer.events[-1]["data"] == {"by": "alice"}
                    assert [e["seq"] for e in viewer.events] == list(
                        range(1, len(viewer.events) + 1)
                    )
                assert viewers[0].events == viewers[1].events
                assert run_id in agent.cancelled, "the agent's cancel was not called"
                agent_run, calls_at_cancel = agent.cancelled[run_id]
                assert agent_run.task is not None
                await asyncio.wait_for(asyncio.shield(agent_run.task), 10)
                # The run was stopped in its first model call; the tool's result would
                # have called the model again.
                assert calls_at_cancel == 1
                assert agent.models[-1].calls == 1
                run = (await a.http.get(f"/api/runs/{run_id}")).json()
                assert run["status"] == "cancelled"
    finally:
        await drop_demo(databases.admin_url, database, role)
    p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    print(
        f"\ncancel -> cancelled at viewer, {RUNS} runs x 2 viewers: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
    )
