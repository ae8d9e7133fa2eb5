"""Claude through LangGraph, against recorded Messages API streams replayed on loopback.

The fake API is the one mocked edge: everything from `ChatAnthropic` (and the
Anthropic SDK's SSE decoding and retries) to the agent's SSE output is real.
Each test asserts the exact typed events that come out.
"""

from __future__ import annotations

from typing import Any

import httpx

from agents.app import create_app
from models.events import (
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    ReasoningText,
    StreamEvent,
    Text,
    TextData,
    ToolResult,
    ToolResultData,
    ToolStream,
    ToolStreamData,
    ToolUse,
    ToolUseData,
)
from tests.e2e.agents.harness import (
    SHOP,
    FakeAnthropic,
    FakeBroker,
    Reply,
    agent_settings,
    collect,
    run_body,
)
from tests.servers import serve

TOOL_USE_ID = "toolu_01D7FLrfh4GYq7yT1ULFeyMV"


def _reasoning(text: str) -> ReasoningText:
    return ReasoningText(data=TextData(text=text))


def _text(text: str) -> Text:
    return Text(data=TextData(text=text))


def _complete(*contents: str) -> Complete:
    messages = [ChatMessage(role="assistant", content=c) for c in contents]
    return Complete(data=CompleteData(new_messages=messages))


async def _replay(
    fake: FakeAnthropic, body: dict[str, Any], broker_url: str = "http://127.0.0.1:9"
) -> list[StreamEvent]:
    async with serve(fake.app()) as anthropic_url:
        settings = agent_settings(
            anthropic_api_key="sk-ant-test-key",
            anthropic_base_url=anthropic_url,
            anthropic_max_retries=1,
            broker_url=broker_url,
        )
        app = create_app(settings)
        async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
            received = await collect(client, body)
    assert [r.id for r in received] == list(range(1, len(received) + 1))
    return [r.event for r in received]


async def test_thinking_and_text_deltas_become_reasoning_text_and_text() -> None:
    fake = FakeAnthropic([Reply(sse_file="thinking_text.sse")])
    events = await _replay(fake, run_body("Hi!"))
    assert events == [
        _reasoning("The user greets me."),
        _reasoning(" A short, friendly answer will do."),
        _text("Hello"),
        _text("! How can I help"),
        _text(" you today?"),
        _complete("Hello! How can I help you today?"),
    ]
    (request,) = fake.requests
    assert request["model"] == "claude-sonnet-4-6"
    assert request["stream"] is True
    assert request["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert request["messages"] == [{"role": "user", "content": "Hi!"}]
    assert "tools" not in request


async def test_tool_use_with_accumulated_input_then_the_answer_after_the_result() -> None:
    fake = FakeAnthropic([Reply(sse_file="tool_use.sse"), Reply(sse_file="answer_after_tool.sse")])
    broker = FakeBroker(answer=(200, {"columns": ["n"], "rows": [[42]], "truncated": False}))
    async with serve(broker.app()) as broker_url:
        events = await _replay(
            fake, run_body("How many orders do we have?", integrations=[SHOP]), broker_url
        )
    result = {"columns": ["n"], "rows": [[42]], "truncated": False}
    assert events == [
        _reasoning("The user wants the number of orders."),
        _reasoning(" I should count the rows of the orders table in the shop database."),
        _text("Let me check"),
        _text(" the shop database."),
        ToolUse(
            data=ToolUseData(
                tool_use_id=TOOL_USE_ID,
                name="query_integration",
                input={"integration_id": "int_shop", "sql": "SELECT COUNT(*) AS n FROM orders"},
            )
        ),
        ToolStream(data=ToolStreamData(tool_use_id=TOOL_USE_ID, text="running query…")),
        ToolStream(data=ToolStreamData(tool_use_id=TOOL_USE_ID, text="1 row")),
        ToolResult(data=ToolResultData(tool_use_id=TOOL_USE_ID, output=result, is_error=False)),
        _text("There are"),
        _text(" 42 orders."),
        _complete("Let me check the shop database.", "There are 42 orders."),
    ]
    (call,) = broker.calls
    assert (call.integration_id, call.sql) == ("int_shop", "SELECT COUNT(*) AS n FROM orders")

    first, second = fake.requests
    (tool,) = first["tools"]
    assert tool["name"] == "query_integration"
    assert tool["input_schema"]["properties"]["integration_id"]["enum"] == ["int_shop"]
    assert "int_shop: shop (postgres)" in str(first["system"])
    # The follow-up carries the thinking block (with its signature) and the tool result back.
    assistant, tool_turn = second["messages"][-2:]
    kinds = [block["type"] for block in assistant["content"]]
    assert kinds == ["thinking", "text", "tool_use"]
    assert assistant["content"][0]["signature"].startswith("ErUBCkYIBxgCKk")
    assert assistant["content"][2]["input"] == {
        "integration_id": "int_shop",
        "sql": "SELECT COUNT(*) AS n FROM orders",
    }
    (tool_result,) = tool_turn["content"]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == TOOL_USE_ID


async def test_an_overloaded_error_mid_stream_ends_the_run_with_a_terminal_error() -> None:
    fake = FakeAnthropic([Reply(sse_file="overloaded_midstream.sse")])
    events = await _replay(fake, run_body("Why is the sky blue?"))
    assert events == [
        _reasoning("Let me think about this."),
        _text("The answer"),
        ErrorEvent(data=ErrorData(error="Overloaded", error_type="overloaded_error")),
    ]
    assert len(fake.requests) == 1


async def test_a_529_before_the_stream_is_retried_then_ends_with_a_terminal_error() -> None:
    fake = FakeAnthropic(
        [
            Reply(status=529, json_file="overloaded_529.json"),
            Reply(status=529, json_file="overloaded_529.json"),
        ]
    )
    events = await _replay(fake, run_body("Why is the sky blue?"))
    assert events == [ErrorEvent(data=ErrorData(error="Overloaded", error_type="overloaded_error"))]
    # One attempt plus `ANTHROPIC_MAX_RETRIES=1` retry.
    assert len(fake.requests) == 2
