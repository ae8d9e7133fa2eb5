"""The scripted model answers like Claude, in Claude's content-block shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from agents.catalog import CATALOG_SQL
from agents.schemas import Integration
from agents.scripted import ScriptedChatModel, asks_for_data
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


@pytest.mark.parametrize("message", ["Hello!", "Write a haiku about autumn", "good morning"])
def test_other_messages_are_not_data_questions(message: str) -> None:
    assert not asks_for_data(message)


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
    # It does not know the tables yet: it reads the catalog first.
    assert call["args"] == {"integration_id": "int_shop", "sql": CATALOG_SQL}
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


def _turn(sql: str, call_id: str, output: dict[str, Any]) -> list[Any]:
    call = {"name": "query_integration", "args": {"integration_id": "int_shop", "sql": sql}}
    return [
        AIMessage(content="", tool_calls=[{**call, "id": call_id}]),
        ToolMessage(content=json.dumps(output), tool_call_id=call_id, artifact=output),
    ]


CATALOG = {
    "columns": ["schema", "name", "kind", "columns", "primary_key", "foreign_keys"],
    "rows": [
        ["public", "tickets", "table", [["id", "integer"], ["opened_on", "date"]], ["id"], []]
    ],
    "truncated": False,
}


async def test_each_turn_replans_from_the_results_in_the_conversation() -> None:
    """Catalog, then the latest date, then the count, then the answer: no state kept."""
    bound = ScriptedChatModel(delay_ms=0).bind_tools([query_tool_spec([SHOP])])
    history: list[Any] = [HumanMessage("How many tickets were opened last month?")]
    history += _turn(CATALOG_SQL, "toolu_1", CATALOG)
    lookup = await bound.ainvoke(history)
    assert isinstance(lookup, AIMessage)
    assert lookup.tool_calls[0]["args"]["sql"] == "SELECT max(opened_on) AS latest FROM tickets"
    history += _turn(
        lookup.tool_calls[0]["args"]["sql"],
        "toolu_2",
        {"columns": ["latest"], "rows": [["2025-03-09"]]},
    )
    count = await bound.ainvoke(history)
    assert isinstance(count, AIMessage)
    sql = count.tool_calls[0]["args"]["sql"]
    assert "DATE '2025-02-01'" in sql and "DATE '2025-03-01'" in sql
    history += _turn(sql, "toolu_3", {"columns": ["tickets"], "rows": [[17]]})
    reply = await bound.ainvoke(history)
    assert isinstance(reply, AIMessage) and reply.tool_calls == []
    assert "**17**" in reply.text and "February 2025" in reply.text


async def test_a_failed_query_ends_with_its_message_and_no_further_call() -> None:
    bound = ScriptedChatModel(delay_ms=0).bind_tools([query_tool_spec([SHOP])])
    failure = {"error": {"code": "query_failed", "message": "relation does not exist"}}
    history: list[Any] = [HumanMessage("select * from nowhere limit 2")]
    call = {"name": "query_integration", "args": {"integration_id": "int_shop", "sql": "x"}}
    history += [
        AIMessage(content="", tool_calls=[{**call, "id": "toolu_1"}]),
        ToolMessage(content="{}", tool_call_id="toolu_1", artifact=failure, status="error"),
    ]
    reply = await bound.ainvoke(history)
    assert isinstance(reply, AIMessage) and reply.tool_calls == []
    assert "relation does not exist" in reply.text


async def test_a_catalog_it_cannot_read_is_said_plainly() -> None:
    bound = ScriptedChatModel(delay_ms=0).bind_tools([query_tool_spec([SHOP])])
    history: list[Any] = [HumanMessage("How many tickets?")]
    history += _turn(CATALOG_SQL, "toolu_1", {"columns": ["n"], "rows": [[1]]})
    reply = await bound.ainvoke(history)
    assert isinstance(reply, AIMessage) and reply.tool_calls == []
    assert "could not read the catalog" in reply.text
