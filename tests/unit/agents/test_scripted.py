"""The scripted model answers like Claude, in Claude's content-block shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from agents.schemas import Integration
from agents.scripted import ScriptedChatModel, asks_for_data, plausible_sql
from agents.tools import query_tool_spec
from agents.translate import StreamTranslator
from models.events import StreamEvent, Text

SHOP = Integration(id="int_shop", kind="postgres", name="shop")


async def _stream(model: Any, messages: list[Any]) -> list[AIMessageChunk]:
    return [chunk async for chunk in model.astream(messages)]


def _translate(chunks: list[AIMessageChunk]) -> list[StreamEvent]:
    translator = StreamTranslator()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += translator.translate({"type": "messages", "ns": (), "data": (chunk, {})})
    assert not translator.dropped
    return events


@pytest.mark.parametrize(
    "message",
    ["How many rows are in the orders table?", "Show me the data", "run a SQL query please"],
)
def test_data_questions_are_recognised(message: str) -> None:
    assert asks_for_data(message)


@pytest.mark.parametrize("message", ["Hello!", "Write a haiku about autumn"])
def test_other_messages_are_not_data_questions(message: str) -> None:
    assert not asks_for_data(message)


@pytest.mark.parametrize(
    ("question", "sql"),
    [
        ("How many rows are in the orders table?", "SELECT COUNT(*) AS count FROM orders"),
        ("Show me the data from customers", "SELECT * FROM customers LIMIT 10"),
        ("count the rows of table invoices", "SELECT COUNT(*) AS count FROM invoices"),
        ("show me some data", "SELECT * FROM events LIMIT 10"),
    ],
)
def test_plausible_sql(question: str, sql: str) -> None:
    assert plausible_sql(question) == sql


async def test_a_data_question_streams_reasoning_then_a_tool_call() -> None:
    model = ScriptedChatModel(delay_ms=0)
    bound = model.bind_tools([query_tool_spec([SHOP])])
    question = HumanMessage("How many rows are in the orders table?")
    chunks = await _stream(bound, [question])

    kinds = [
        block["type"] for chunk in chunks for block in chunk.content if isinstance(block, dict)
    ]
    first_tool = kinds.index("tool_use")
    assert set(kinds[:first_tool]) == {"thinking"}
    assert set(kinds[first_tool + 1 :]) == {"input_json_delta"}
    events = _translate(chunks)
    assert {e.event_type for e in events} == {"reasoning_text"}
    assert model.calls == 1

    reply = await bound.ainvoke([question])
    assert isinstance(reply, AIMessage)
    (call,) = reply.tool_calls
    assert call["name"] == "query_integration"
    assert call["args"] == {
        "integration_id": "int_shop",
        "sql": "SELECT COUNT(*) AS count FROM orders",
    }
    assert call["id"] is not None and call["id"].startswith("toolu_")
    assert model.calls == 2


async def test_after_the_tool_result_the_answer_uses_the_rows() -> None:
    model = ScriptedChatModel(delay_ms=0)
    result = {"columns": ["count"], "rows": [[42]], "truncated": False}
    history = [
        HumanMessage("How many orders?"),
        AIMessage(
            content="",
            tool_calls=[{"name": "query_integration", "args": {}, "id": "toolu_1"}],
        ),
        ToolMessage(content=json.dumps(result), tool_call_id="toolu_1", artifact=result),
    ]
    events = _translate(await _stream(model, history))
    kinds = [e.event_type for e in events]
    assert kinds[0] == "reasoning_text" and kinds[-1] == "text"
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning_text")
    answer = "".join(e.data.text for e in events if isinstance(e, Text))
    assert "42" in answer


async def test_a_failed_tool_result_is_reported_in_the_answer() -> None:
    model = ScriptedChatModel(delay_ms=0)
    output = {"error": {"code": "unreachable", "message": "cannot reach the broker"}}
    history = [
        HumanMessage("How many orders?"),
        ToolMessage(
            content=json.dumps(output), tool_call_id="toolu_1", artifact=output, status="error"
        ),
    ]
    reply = await model.ainvoke(history)
    assert "cannot reach the broker" in reply.text


async def test_without_an_integration_a_data_question_gets_a_plain_answer() -> None:
    model = ScriptedChatModel(delay_ms=0)
    reply = await model.ainvoke([HumanMessage("How many rows are in orders?")])
    assert isinstance(reply, AIMessage) and reply.tool_calls == []
    assert "no integration" in reply.text


async def test_a_plain_message_streams_word_by_word_in_anthropic_shapes() -> None:
    model = ScriptedChatModel(delay_ms=0)
    chunks = await _stream(model, [HumanMessage("Hello there")])
    events = _translate(chunks)
    texts = [e for e in events if e.event_type == "text"]
    assert len(texts) > 5
    blocks = [block for chunk in chunks for block in chunk.content if isinstance(block, dict)]
    assert {block["index"] for block in blocks} == {0, 1}
    # The thinking block ends with a signature, as Claude's does.
    assert any("signature" in block for block in blocks)


def test_the_sync_path_gives_the_same_reply() -> None:
    model = ScriptedChatModel(delay_ms=0)
    reply = model.invoke([HumanMessage("Hello there")])
    assert "Hello there" in reply.text
    assert model.calls == 1
