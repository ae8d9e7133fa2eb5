"""The whole system over loopback: the real agent service (scripted model), the real
broker with both its write and read sides, the demo integration, a real PostgreSQL.

A user starts a run with a data question and watches it through the public
contract: the agent reasons, queries the demo database through the broker's
callback, streams its answer, and the run completes with its transcript kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from tests.database import TestDatabases
from tests.e2e.whole_system import whole_system


@pytest.fixture
async def client(
    settings: Settings, store: Store, databases: TestDatabases
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a broker wired to a real agent service, with a demo integration."""
    async with whole_system(settings, store, databases, name="sys", delay_ms=1) as system:
        yield system.api


async def _watch(
    client: httpx.AsyncClient, run_id: str, cursor: str | None
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with client.stream(
        "POST", f"/api/runs/{run_id}/subscribe", json={"cursor": cursor}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for frame in aiter_sse(response.aiter_bytes()):
            event = frame.json()
            assert frame.id == str(event["seq"])
            events.append(event)
    return events


async def test_a_data_question_streams_through_tools_to_a_kept_transcript(
    client: httpx.AsyncClient,
) -> None:
    thread = (await client.post("/api/threads", json={"title": "orders"})).json()["thread_id"]
    started = await client.post(
        f"/api/threads/{thread}/runs", json={"message": "How many orders are in the table?"}
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    events = await _watch(client, run_id, cursor=None)

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["event_type"] for e in events]
    assert types[0] == "run_started"
    assert types[-1] == "complete"
    assert types.count("complete") == 1
    for expected in ("reasoning_text", "tool_use", "tool_stream", "tool_result", "text"):
        assert expected in types, types
    assert types.index("tool_use") < types.index("tool_result") < len(types) - 1
    result = next(e for e in events if e["event_type"] == "tool_result")
    assert result["data"]["is_error"] is False, result
    answer = "".join(e["data"]["text"] for e in events if e["event_type"] == "text")
    assert answer.strip()

    # A second viewer joining late from the middle gets exactly the rest.
    middle = len(events) // 2
    rest = await _watch(client, run_id, cursor=str(middle))
    assert rest == events[middle:]

    run = (await client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "completed"
    assert run["last_seq"] == len(events)
    messages = (await client.get(f"/api/threads/{thread}/messages")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "How many orders are in the table?"
    assert messages[1]["content"] == answer
