"""App shutdown cancels the runs in flight and leaves no task behind."""

from __future__ import annotations

import asyncio

import httpx

from agents.app import create_app
from agents.registry import RunRegistry
from models.events import Cancelled, CancelledData
from tests.e2e.agents.harness import AUTH, agent_settings, events_of, run_body
from tests.servers import serve


def _agent_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("agent-")]


async def test_shutdown_cancels_detached_runs_and_leaves_no_task() -> None:
    app = create_app(agent_settings(agent_scripted_delay_ms=50, agent_detach_grace_s=30))
    registry: RunRegistry = app.state.registry
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        bodies = [run_body("Tell me a long story about the sea, please.") for _ in range(3)]
        for body in bodies:
            async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
                await anext(events_of(response))
        runs = [registry.get(str(body["run_id"])) for body in bodies]
        assert len(_agent_tasks()) >= 3

    for run in runs:
        assert run.task is not None and run.task.done()
        assert run.buffer.last_event == Cancelled(data=CancelledData(by="shutdown"))
    assert len(registry) == 0
    assert _agent_tasks() == []
