"""An `EventSource`'s view of a run: where it reconnects from, and when it stops.

The real agent service (its `bench` load) and a real broker over loopback.
The client here is the project's SSE parser, which keeps the last event id
across connections as an `EventSource` does, and sends it back as
`Last-Event-ID` on a reconnect.

- The opening block of an SSE answer carries `id: <resolved cursor>`, so a
  viewer that asked for `cursor=now` and dropped before its first event
  resumes from the head it was shown: the event written meanwhile is not lost.
- `GET .../events` for a finished run with nothing due answers 204, which
  tells an `EventSource` to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agents.app import create_app as create_agent_app
from agents.settings import AgentSettings
from broker.app import create_app
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from broker.web.sse import SSEParser, iter_sse
from tests.servers import serve


@pytest.fixture
async def client(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a broker wired to the real agent service."""
    workspace_id = await store.ensure_workspace("acme")
    async with serve(
        create_agent_app(
            AgentSettings(
                BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
                ANTHROPIC_API_KEY=None,
            )
        )
    ) as agent_url:
        token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
        async with (
            serve(create_app(settings.model_copy(update={"agent_url": agent_url}))) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http,
        ):
            yield http


async def _start(client: httpx.AsyncClient, message: str) -> str:
    thread = (await client.post("/api/threads", json={"title": "resume"})).json()
    answer = await client.post(
        f"/api/threads/{thread['thread_id']}/runs", json={"message": message}
    )
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


async def _run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    answer = await client.get(f"/api/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


async def _until_head(client: httpx.AsyncClient, run_id: str, seq: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (run := await _run(client, run_id))["last_seq"] < seq:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never reached seq {seq}: {run}")
        await asyncio.sleep(0.02)
    return run


async def test_a_reconnect_after_cursor_now_resumes_from_the_head_it_was_shown(
    client: httpx.AsyncClient,
) -> None:
    run_id = await _start(client, "bench events=4 rate=0.25 size=8")
    assert (await _until_head(client, run_id, 2))["last_seq"] == 2
    url = f"/api/runs/{run_id}/events?cursor=now"
    browser = SSEParser()
    # The first connection shows the head (seq 2) and drops before any event.
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            assert browser.feed(chunk) == []
            if browser.last_event_id is not None:
                break
    assert browser.last_event_id == "2"
    # Seq 3 is written while nobody is connected.
    await _until_head(client, run_id, 3)
    # The same URL again, with the id the browser kept, as an EventSource reconnects.
    seqs: list[int] = []
    async with client.stream("GET", url, headers={"Last-Event-ID": browser.last_event_id}) as again:
        assert again.status_code == 200
        async for chunk in again.aiter_bytes():
            for event in browser.feed(chunk):
                seqs.append(event.json()["seq"])
                if seqs == [3, 4]:
                    # Enough shown; Stop ends the run rather than wait for its last events.
                    stopped = await client.post(f"/api/runs/{run_id}/cancel")
                    assert stopped.status_code == 202
                if event.json()["event_type"] == "cancelled":
                    break
    assert seqs == [3, 4, 5]
    assert browser.last_event_id == "5"
    assert (await _run(client, run_id))["status"] == "cancelled"


async def test_a_finished_run_with_nothing_due_answers_204_to_an_event_source(
    client: httpx.AsyncClient,
) -> None:
    run_id = await _start(client, "bench events=2 rate=200 size=8")
    deadline = time.monotonic() + 30
    while (run := await _run(client, run_id))["status"] == "streaming":
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.02)
    terminal = run["last_seq"]
    assert (run["status"], terminal) == ("completed", 4)
    events = f"/api/runs/{run_id}/events"
    for options in (
        {"headers": {"Last-Event-ID": str(terminal)}},
        {"params": {"cursor": str(terminal)}},
        {"params": {"cursor": "now"}},
        {"params": {"cursor": str(terminal + 10)}},
    ):
        answer = await client.get(events, **options)  # type: ignore[arg-type]
        assert (answer.status_code, answer.content) == (204, b""), options
    # Something due: the terminal event, then the stream closes.
    due = await client.get(events, headers={"Last-Event-ID": str(terminal - 1)})
    assert due.status_code == 200
    assert due.content.startswith(f"retry: 1000\nid: {terminal - 1}\n\n".encode())
    assert [e.json()["event_type"] for e in iter_sse([due.content])] == ["complete"]
    # Other formats and the POST subscribe still answer their document or stream.
    as_json = await client.get(
        events, params={"cursor": "now"}, headers={"Accept": "application/json"}
    )
    assert (as_json.status_code, as_json.json()["events"]) == (200, [])
    posted = await client.post(f"/api/runs/{run_id}/subscribe", json={"cursor": terminal})
    assert (posted.status_code, posted.content) == (
        200,
        f"retry: 1000\nid: {terminal}\n\n".encode(),
    )
