"""Each translator recognises one shape and only that one; the chain counts what nobody claims."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from agents.translate import (
    StreamTranslator,
    echoed_message,
    input_json_delta,
    items_of,
    redacted_thinking,
    text_delta,
    thinking_delta,
    tool_calls,
    tool_progress,
    tool_progress_payload,
    tool_result,
    tool_use_start,
)
from models.events import (
    ReasoningText,
    Text,
    TextData,
    ToolResult,
    ToolResultData,
    ToolStream,
    ToolStreamData,
    ToolUse,
    ToolUseData,
)


def _messages_part(message: Any) -> dict[str, Any]:
    return {"type": "messages", "ns": (), "data": (message, {"langgraph_node": "model"})}


def _block(block: dict[str, Any]) -> tuple[str, Any]:
    return ("block", block)


THINKING = _block({"type": "thinking", "thinking": "Let me see.", "index": 0})
SIGNATURE = _block({"type": "thinking", "thinking": "", "signature": "EqQB", "index": 0})
TEXT = _block({"type": "text", "text": "Hello", "index": 1})
TOOL_START = _block({"type": "tool_use", "id": "toolu_1", "name": "q", "input": {}, "index": 2})
JSON_DELTA = _block({"type": "input_json_delta", "partial_json": '{"a', "index": 2})
REDACTED = _block({"type": "redacted_thinking", "data": "xyz", "index": 0})
AI_WITH_CALL = (
    "message",
    AIMessage(
        content=[{"type": "text", "text": "Let me check."}],
        tool_calls=[{"name": "query_integration", "args": {"sql": "SELECT 1"}, "id": "toolu_1"}],
    ),
)
TOOL_MESSAGE = (
    "message",
    ToolMessage(
        content='{"rows": []}', tool_call_id="toolu_1", artifact={"rows": []}, status="success"
    ),
)
PROGRESS = ("custom", tool_progress_payload("toolu_1", "running query…"))
ECHO = ("echo", ToolMessage(content="x", tool_call_id="toolu_1"))
ALL_ITEMS = [
    THINKING,
    SIGNATURE,
    TEXT,
    TOOL_START,
    JSON_DELTA,
    REDACTED,
    AI_WITH_CALL,
    TOOL_MESSAGE,
    PROGRESS,
    ECHO,
]


def test_thinking_delta_becomes_reasoning_text() -> None:
    assert thinking_delta(THINKING) == [ReasoningText(data=TextData(text="Let me see."))]


def test_signature_delta_is_recognised_and_shows_nothing() -> None:
    assert thinking_delta(SIGNATURE) == []


def test_text_delta_becomes_text() -> None:
    assert text_delta(TEXT) == [Text(data=TextData(text="Hello"))]


def test_text_block_without_text_shows_nothing() -> None:
    assert text_delta(_block({"type": "text", "citations": [{}], "index": 1})) == []


def test_tool_use_start_and_input_fragments_are_claimed_without_events() -> None:
    assert tool_use_start(TOOL_START) == []
    assert input_json_delta(JSON_DELTA) == []


def test_redacted_thinking_is_claimed_without_events() -> None:
    assert redacted_thinking(REDACTED) == []


def test_finished_model_message_gives_one_tool_use_per_call_with_parsed_input() -> None:
    assert tool_calls(AI_WITH_CALL) == [
        ToolUse(
            data=ToolUseData(
                tool_use_id="toolu_1", name="query_integration", input={"sql": "SELECT 1"}
            )
        )
    ]


def test_finished_model_message_without_calls_gives_no_events() -> None:
    assert tool_calls(("message", AIMessage(content="done"))) == []


def test_tool_message_becomes_tool_result_with_the_artifact_as_output() -> None:
    assert tool_result(TOOL_MESSAGE) == [
        ToolResult(data=ToolResultData(tool_use_id="toolu_1", output={"rows": []}, is_error=False))
    ]


def test_failed_tool_message_becomes_error_tool_result_with_content_when_no_artifact() -> None:
    item = ("message", ToolMessage(content="boom", tool_call_id="toolu_9", status="error"))
    assert tool_result(item) == [
        ToolResult(data=ToolResultData(tool_use_id="toolu_9", output="boom", is_error=True))
    ]


def test_custom_progress_becomes_tool_stream() -> None:
    assert tool_progress(PROGRESS) == [
        ToolStream(data=ToolStreamData(tool_use_id="toolu_1", text="running query…"))
    ]


def test_custom_value_of_another_kind_is_not_progress() -> None:
    assert tool_progress(("custom", {"kind": "other", "text": "x"})) is None
    assert tool_progress(("custom", "plain string")) is None


def test_echoed_messages_are_claimed_without_events() -> None:
    assert echoed_message(ECHO) == []


@pytest.mark.parametrize(
    ("translator", "mine"),
    [
        (thinking_delta, {0, 1}),
        (text_delta, {2}),
        (tool_use_start, {3}),
        (input_json_delta, {4}),
        (redacted_thinking, {5}),
        (tool_calls, {6}),
        (tool_result, {7}),
        (tool_progress, {8}),
        (echoed_message, {9}),
    ],
)
def test_each_translator_claims_only_its_own_shape(translator: Any, mine: set[int]) -> None:
    claimed = {i for i, item in enumerate(ALL_ITEMS) if translator(item) is not None}
    assert claimed == mine


def test_items_of_cuts_a_chunk_into_its_content_blocks() -> None:
    chunk = AIMessageChunk(
        content=[
            {"type": "thinking", "thinking": "a", "index": 0},
            {"type": "text", "text": "b", "index": 1},
        ]
    )
    assert list(items_of(_messages_part(chunk))) == [
        ("block", {"type": "thinking", "thinking": "a", "index": 0}),
        ("block", {"type": "text", "text": "b", "index": 1}),
    ]


def test_items_of_treats_a_plain_string_chunk_as_text_and_skips_empty_ones() -> None:
    assert list(items_of(_messages_part(AIMessageChunk(content="hi")))) == [
        ("block", {"type": "text", "text": "hi"})
    ]
    assert list(items_of(_messages_part(AIMessageChunk(content="")))) == []
    assert list(items_of(_messages_part(AIMessageChunk(content=[])))) == []


def test_items_of_reads_node_updates_and_echoes() -> None:
    tool_message = ToolMessage(content="x", tool_call_id="t")
    update = {"type": "updates", "ns": (), "data": {"tools": {"messages": [tool_message]}}}
    assert list(items_of(update)) == [("message", tool_message)]
    assert list(items_of(_messages_part(tool_message))) == [("echo", tool_message)]


def test_chain_translates_a_whole_part_in_order() -> None:
    chunk = AIMessageChunk(
        content=[
            {"type": "thinking", "thinking": "hmm", "index": 0},
            {"type": "text", "text": "Hi", "index": 1},
        ]
    )
    translator = StreamTranslator()
    assert translator.translate(_messages_part(chunk)) == [
        ReasoningText(data=TextData(text="hmm")),
        Text(data=TextData(text="Hi")),
    ]
    assert not translator.dropped


def test_chain_drops_and_counts_unknown_shapes() -> None:
    translator = StreamTranslator()
    chunk = AIMessageChunk(
        content=[
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "index": 0},
            {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "index": 1},
            {"type": "text", "text": "ok", "index": 2},
        ]
    )
    assert translator.translate(_messages_part(chunk)) == [Text(data=TextData(text="ok"))]
    assert translator.translate({"type": "values", "ns": (), "data": {}}) == []
    assert translator.translate(_messages_part(HumanMessage(content="hi"))) == []
    assert translator.dropped == {"block:server_tool_use": 2, "part:values": 1}


def test_first_match_wins() -> None:
    def shout(item: tuple[str, Any]) -> list[Text] | None:
        return [Text(data=TextData(text="FIRST"))] if item[0] == "block" else None

    translator = StreamTranslator([shout, text_delta])
    part = _messages_part(AIMessageChunk(content=[{"type": "text", "text": "x", "index": 0}]))
    assert translator.translate(part) == [Text(data=TextData(text="FIRST"))]
