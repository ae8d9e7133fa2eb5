"""Disconnect and re-attach with `Last-Event-ID`: no gap, no duplicate; past the grace, gone."""

from __future__ import annotations

import asyncio

import httpx

from agents.app import create_app
from agents.registry import RunRegistry
from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings
from models.events import Cancelled, CancelledData, Complete, Text
from tests.e2e.agents.harness import AUTH, Received, agent_settings, events_of, run_body
from tests.servers import serve


async def _read_then_disconnect(
    client: httpx.AsyncClient, body: dict[str, object], k: int
) -> list[Received]:
    first: list[Received] = []
    async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
        async for received in events_of(response):
            first.append(received)
            if len(first) == k:
                break
    return first


async def test_reattach_after_a_disconnect_continues_with_no_gap_and_no_duplicate() -> None:
    app = create_app(agent_settings(agent_scripted_delay_ms=10))
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        body = run_body("Hello there, how are you today?")
        first = await _read_then_disconnect(client, body, k=5)
        # The run goes on without a client meanwhile.
        await asyncio.sleep(0.1)
        headers = {**AUTH, "Last-Event-ID": "5"}
        async with client.stream(
            "GET", f"/runs/{body['run_id']}/stream", headers=headers
        ) as response:
            assert response.status_code == 200
            rest = [r async for r in events_of(response)]
        await asyncio.sleep(0.05)
        after_terminal = await client.get(f"/runs/{body['run_id']}/stream", headers=AUTH)

    assert [r.id for r in first] == [1, 2, 3, 4, 5]
    assert [r.id for r in rest] == list(range(6, 6 + len(rest)))
    complete = rest[-1].event
    assert isinstance(complete, Complete)
    streamed = "".join(r.event.data.text for r in first + rest if isinstance(r.event, Text))
    assert [m.content for m in complete.data.new_messages] == [streamed]
    # Delivered the terminal event: the run is forgotten.
    assert after_terminal.status_code == 404
    assert after_terminal.json()["error"]["code"] == "run_not_found"


async def test_two_readers_see_the_same_events() -> None:
    app = create_app(agent_settings(agent_scripted_delay_ms=5))
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        body = run_body("Hello there")
        async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as one:
            stream = events_of(one)
            head = [await anext(stream)]
            async with client.stream("GET", f"/runs/{body['run_id']}/stream", headers=AUTH) as two:
                second = [r async for r in events_of(two)]
            first = head + [r async for r in stream]
    assert [(r.id, r.event) for r in first] == [(r.id, r.event) for r in second]


async def test_no_client_past_the_grace_period_cancels_and_forgets_the_run() -> None:
    model = ScriptedChatModel(delay_ms=20)

    def factory(settings: AgentSettings) -> ScriptedChatModel:
        return model

    app = create_app(agent_settings(agent_detach_grace_s=0.2), model_factory=factory)
    registry: RunRegistry = app.state.registry
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        body = run_body("Hello there, please tell me a long story about the sea.")
        await _read_then_disconnect(client, body, k=3)
        run = registry.get(str(body["run_id"]))
        await asyncio.sleep(0.5)
        headers = {**AUTH, "Last-Event-ID": "3"}
        stream_answer = await client.get(f"/runs/{body['run_id']}/stream", headers=headers)
        cancel_answer = await client.post(f"/runs/{body['run_id']}/cancel", headers=AUTH)
        chunks_at_expiry = run.buffer.head
        await asyncio.sleep(0.1)

    assert stream_answer.status_code == 404 and cancel_answer.status_code == 404
    assert run.task is not None and run.task.done()
    assert run.buffer.last_event == Cancelled(data=CancelledData(by="detached"))
    assert run.buffer.head == chunks_at_expiry
    assert model.calls == 1


async def test_a_second_start_of_a_run_in_flight_is_a_conflict() -> None:
    app = create_app(agent_settings(agent_scripted_delay_ms=10))
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        body = run_body("Hello there")
        async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
            stream = events_of(response)
            await anext(stream)
            again = await client.post("/runs/stream", json=body, headers=AUTH)
            rest = [r async for r in stream]
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_in_flight"
    assert rest[-1].type == "complete"
