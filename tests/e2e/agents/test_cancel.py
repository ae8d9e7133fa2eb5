"""Cancel: `cancelled` within 200 ms of the call, and the model is not called again."""

from __future__ import annotations

import asyncio
import time

import httpx

from agents.app import create_app
from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings
from models.events import Cancelled, CancelledData
from tests.e2e.agents.harness import AUTH, SHOP, FakeBroker, agent_settings, events_of, run_body
from tests.servers import serve


async def test_cancel_at_a_tool_boundary() -> None:
    model = ScriptedChatModel(delay_ms=2)
    broker = FakeBroker(delay_s=0.5)

    def factory(settings: AgentSettings) -> ScriptedChatModel:
        return model

    async with serve(broker.app()) as broker_url:
        app = create_app(agent_settings(broker_url=broker_url), model_factory=factory)
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            body = run_body("How many rows are in the orders table?", integrations=[SHOP])
            async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
                stream = events_of(response)
                async for received in stream:
                    if received.type == "tool_use":
                        break
                calls_at_cancel = model.calls
                started = time.monotonic()
                answer = await client.post(f"/runs/{body['run_id']}/cancel", headers=AUTH)
                rest = [r async for r in stream]
            await asyncio.sleep(0.3)

    assert answer.status_code == 202
    assert answer.json() == {"run_id": body["run_id"], "status": "cancelling"}
    assert [r.type for r in rest][-1] == "cancelled"
    assert "tool_result" not in [r.type for r in rest]
    assert rest[-1].event == Cancelled(data=CancelledData(by="agent"))
    assert rest[-1].at - started < 0.2
    assert calls_at_cancel == 1 and model.calls == 1


async def test_cancel_mid_answer() -> None:
    model = ScriptedChatModel(delay_ms=20)

    def factory(settings: AgentSettings) -> ScriptedChatModel:
        return model

    app = create_app(agent_settings(), model_factory=factory)
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        body = run_body("Hello there, tell me something.")
        async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
            stream = events_of(response)
            texts = 0
            async for received in stream:
                texts += received.type == "text"
                if texts == 3:
                    break
            started = time.monotonic()
            answer = await client.post(f"/runs/{body['run_id']}/cancel", headers=AUTH)
            rest = [r async for r in stream]
        await asyncio.sleep(0.2)
        # The run was forgotten once its terminal event was delivered.
        gone = await client.post(f"/runs/{body['run_id']}/cancel", headers=AUTH)

    assert answer.status_code == 202
    assert rest[-1].event == Cancelled(data=CancelledData(by="agent"))
    assert rest[-1].at - started < 0.2
    # At most a chunk already in flight when the cancel landed, nothing after it.
    assert len(rest) <= 2
    assert model.calls == 1
    assert gone.status_code == 404
