"""The scripted model end to end, over real uvicorn servers, with a fake broker callback."""

from __future__ import annotations

import httpx

from agents.app import create_app
from broker.web.sse import iter_sse
from models.events import Complete, Text, ToolResult, ToolStream, ToolUse, parse_event
from tests.e2e.agents.harness import (
    AUTH,
    SECRET,
    SHOP,
    FakeBroker,
    agent_settings,
    collect,
    events_of,
    run_body,
)
from tests.servers import serve


def _collapse(kinds: list[str]) -> list[str]:
    """Runs of the same event type as one: the shape of the stream."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


async def test_a_data_question_queries_the_broker_and_answers_from_the_rows() -> None:
    broker = FakeBroker(answer=(200, {"columns": ["count"], "rows": [[42]], "truncated": False}))
    async with serve(broker.app()) as broker_url:
        app = create_app(agent_settings(broker_url=broker_url))
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            body = run_body("select count(*) as count from orders", integrations=[SHOP])
            headers = {**AUTH, "X-Request-ID": "req-e2e-1"}
            async with client.stream(
                "POST", "/runs/stream", json=body, headers=headers
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-cache"
                assert response.headers["x-accel-buffering"] == "no"
                received = [r async for r in events_of(response)]

    assert [r.id for r in received] == list(range(1, len(received) + 1))
    assert _collapse([r.type for r in received]) == [
        "reasoning_text",
        "tool_use",
        "tool_stream",
        "tool_result",
        "reasoning_text",
        "text",
        "complete",
    ]
    events = [r.event for r in received]
    (tool_use,) = [e for e in events if isinstance(e, ToolUse)]
    assert tool_use.data.name == "query_integration"
    assert tool_use.data.input == {
        "integration_id": "int_shop",
        "sql": "select count(*) as count from orders",
    }
    progress = [e.data.text for e in events if isinstance(e, ToolStream)]
    assert progress == ["running query…", "1 row"]
    assert all(
        e.data.tool_use_id == tool_use.data.tool_use_id
        for e in events
        if isinstance(e, ToolStream | ToolResult)
    )
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.data.is_error is False
    assert result.data.output == {"columns": ["count"], "rows": [[42]], "truncated": False}
    answer = "".join(e.data.text for e in events if isinstance(e, Text))
    assert "42" in answer
    complete = events[-1]
    assert isinstance(complete, Complete)
    assert [(m.role, m.content) for m in complete.data.new_messages] == [("assistant", answer)]

    (call,) = broker.calls
    assert call.integration_id == "int_shop"
    assert call.sql == "select count(*) as count from orders"
    assert call.secret == SECRET
    assert call.request_id == "req-e2e-1"


async def test_a_failing_callback_becomes_an_error_tool_result_and_the_run_completes() -> None:
    broker = FakeBroker(
        answer=(502, {"error": {"code": "integration_unavailable", "message": "db is down"}})
    )
    async with serve(broker.app()) as broker_url:
        app = create_app(agent_settings(broker_url=broker_url))
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            received = await collect(
                client, run_body("Show me the data from customers", integrations=[SHOP])
            )
    events = [r.event for r in received]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.data.is_error is True
    assert result.data.output == {
        "error": {"code": "integration_unavailable", "message": "db is down"}
    }
    assert isinstance(events[-1], Complete)
    assert "db is down" in "".join(e.data.text for e in events if isinstance(e, Text))


async def test_an_unreachable_broker_becomes_an_error_tool_result() -> None:
    # Nothing listens on the discard port of loopback: connection refused.
    app = create_app(agent_settings(broker_url="http://127.0.0.1:9"))
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        received = await collect(client, run_body("How many orders?", integrations=[SHOP]))
    (result,) = [r.event for r in received if isinstance(r.event, ToolResult)]
    assert result.data.is_error is True
    assert result.data.output["error"]["code"] == "unreachable"
    assert received[-1].type == "complete"


async def test_a_slow_broker_times_out_into_an_error_tool_result() -> None:
    broker = FakeBroker(delay_s=0.5)
    async with serve(broker.app()) as broker_url:
        app = create_app(agent_settings(broker_url=broker_url, agent_tool_timeout_s=0.1))
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            received = await collect(client, run_body("How many orders?", integrations=[SHOP]))
    (result,) = [r.event for r in received if isinstance(r.event, ToolResult)]
    assert result.data.is_error is True
    assert result.data.output["error"]["code"] == "timeout"
    assert received[-1].type == "complete"


async def test_a_plain_message_is_answered_without_tools() -> None:
    app = create_app(agent_settings())
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        received = await collect(client, run_body("Hello!", integrations=[SHOP]))
    assert _collapse([r.type for r in received]) == ["reasoning_text", "text", "complete"]


async def test_a_silent_run_sends_keepalive_comments() -> None:
    broker = FakeBroker(delay_s=0.3)
    async with serve(broker.app()) as broker_url:
        app = create_app(agent_settings(broker_url=broker_url, agent_keepalive_s=0.05))
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            body = run_body("How many orders?", integrations=[SHOP])
            async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
                raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert raw.count(b": keepalive\n\n") >= 3
    # The comments are invisible to an SSE parser: the events are all there.
    events = [parse_event(e.json()) for e in iter_sse([raw])]
    assert events[-1].event_type == "complete"
    assert [e.event_type for e in events].count("tool_result") == 1
