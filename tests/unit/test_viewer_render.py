"""Renderers of a run (transcript, JSON document) and the ending rebuilt after retention."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from broker.store.records import RunRecord, RunState, StoredMessage
from broker.web.wirejson import dumps
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    MessageData,
    MessageEvent,
    ReasoningText,
    StoredEvent,
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
from models.ids import RunId, ThreadId, WorkspaceId
from subscribe.frame import frame_of
from subscribe.render import (
    json_document_bytes,
    render_markdown,
    render_plain,
    run_view,
    transcript,
)
from subscribe.subscription import ending_event

TS = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
RUN = RunId(uuid.uuid4())


def state(status: str = "completed", head: int = 9, **fields: object) -> RunState:
    values: dict[str, object] = {
        "run_id": RUN,
        "thread_id": ThreadId(uuid.uuid4()),
        "workspace_id": WorkspaceId(uuid.uuid4()),
        "status": status,
        "last_seq": head,
        "created_at": TS,
        "finished_at": TS if status != "streaming" else None,
        "error": None,
        "error_type": None,
        "agent_event_id": None,
        "writer_id": None,
        "abort_requested_at": None,
    }
    aborted_by = fields.pop("aborted_by", None)
    values.update(fields)
    return RunState(RunRecord(**values), head, aborted_by)  # type: ignore[arg-type]


def run_of(*events: StreamEvent) -> list[StoredEvent]:
    return [StoredEvent(seq=i, ts=TS, event=e) for i, e in enumerate(events, start=1)]


EVENTS = run_of(
    ReasoningText(data=TextData(text="The user wants ")),
    ReasoningText(data=TextData(text="revenue.")),
    ToolUse(data=ToolUseData(tool_use_id="tu1", name="query", input={"sql": "SELECT 1"})),
    ToolStream(data=ToolStreamData(tool_use_id="tu1", text="running…")),
    ToolResult(data=ToolResultData(tool_use_id="tu1", output=[{"n": 1}])),
    Text(data=TextData(text="Revenue is ")),
    Text(data=TextData(text="```42```.")),
    MessageEvent(
        data=MessageData(message=ChatMessage(role="assistant", content="Revenue is ```42```."))
    ),
    Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="x")])),
)


def test_deltas_join_into_blocks_and_a_repeated_message_is_not_shown_twice() -> None:
    blocks = transcript(EVENTS)
    assert [b.kind for b in blocks] == ["reasoning", "tool", "answer", "ending"]
    assert blocks[0].text == "The user wants revenue."
    tool = blocks[1]
    assert (tool.title, tool.tool_input, tool.progress, tool.result) == (
        "query",
        {"sql": "SELECT 1"},
        "running…",
        [{"n": 1}],
    )
    assert blocks[2].text == "Revenue is ```42```."


def test_markdown_shows_reasoning_tool_call_result_and_answer() -> None:
    text = render_markdown(state(), EVENTS)
    assert text.startswith(f"# Run {RUN}\n\n**Status:** completed\n\n> *Reasoning*\n>\n")
    assert "> The user wants revenue." in text
    assert '**Tool call** `query` (tu1)\n\n```json\n{\n  "sql": "SELECT 1"\n}\n```' in text
    assert "**Tool result** (tu1)" in text and '"n": 1' in text
    # The answer holds a triple backtick: fences elsewhere must not be broken by it.
    assert "\n\nRevenue is ```42```.\n\n---\n\n*Run completed.*\n" in text


def test_plain_text_has_the_same_content_without_markup() -> None:
    text = render_plain(state(), EVENTS)
    assert text.startswith(f"Run {RUN} (completed)\n\n[reasoning]\nThe user wants revenue.")
    assert "[tool call] query tu1\n{\n" in text
    assert "[tool progress] tu1\nrunning…" in text
    assert "[tool result] tu1\n" in text
    assert text.endswith("Revenue is ```42```.\n\n[run completed]\n")
    assert "**" not in text and "```json" not in text


def test_code_fences_outgrow_backticks_in_tool_output() -> None:
    events = run_of(
        ToolUse(data=ToolUseData(tool_use_id="t", name="sh", input={})),
        ToolResult(data=ToolResultData(tool_use_id="t", output="a ```` b", is_error=True)),
    )
    text = render_markdown(state("streaming"), events)
    assert "**Tool error** (t)\n\n`````\na ```` b\n`````" in text


def test_endings_are_spelled_out() -> None:
    failed = run_of(ErrorEvent(data=ErrorData(error="boom", error_type="producer_lost")))
    assert "*Run error (producer_lost): boom.*" in render_markdown(state("failed"), failed)
    stopped = run_of(Cancelled(data=CancelledData(by="ann")))
    assert render_plain(state("cancelled"), stopped).endswith("[run cancelled by ann]\n")


def test_after_retention_the_complete_event_carries_the_answer() -> None:
    events = run_of(
        Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="42")]))
    )
    assert render_plain(state(), events).endswith("\n\n42\n\n[run completed]\n")


def test_run_view_and_json_document_have_the_contract_shape() -> None:
    view = run_view(state(head=9)).model_dump(mode="json")
    assert set(view) == {
        "run_id",
        "thread_id",
        "status",
        "last_seq",
        "created_at",
        "finished_at",
        "error",
    }
    assert view["last_seq"] == 9 and view["run_id"] == str(RUN)
    document = json_document(state(), EVENTS[:2])
    assert document["events"][1] == {
        "seq": 2,
        "event_type": "reasoning_text",
        "data": {"text": "revenue."},
        "ts": "2026-11-21T10:00:00.000Z",
    }


def json_document(state: RunState, events: Sequence[StoredEvent]) -> dict[str, Any]:
    """The `application/json` answer as the contract says it: the run and its wire events."""
    return {
        "run": run_view(state).model_dump(mode="json"),
        "events": [event.to_wire() for event in events],
    }


def message(role: Literal["user", "assistant"], content: str) -> StoredMessage:
    return StoredMessage(uuid.uuid4(), RUN, 1, ChatMessage(role=role, content=content), TS)


@pytest.mark.parametrize(
    ("status", "fields", "expected"),
    [
        (
            "completed",
            {},
            Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="42")])),
        ),
        ("cancelled", {"aborted_by": "ann"}, Cancelled(data=CancelledData(by="ann"))),
        (
            "failed",
            {"error": "agent died", "error_type": "producer_lost"},
            ErrorEvent(data=ErrorData(error="agent died", error_type="producer_lost")),
        ),
        (
            "interrupted",
            {},
            ErrorEvent(data=ErrorData(error="the run ended interrupted", error_type="interrupted")),
        ),
    ],
)
def test_the_ending_is_rebuilt_from_the_run_row_with_the_terminal_seq(
    status: str, fields: dict[str, object], expected: StreamEvent
) -> None:
    messages = [message("user", "what is it?"), message("assistant", "42")]
    ending = ending_event(state(status, head=57, **fields), messages)
    assert ending.seq == 57 and ending.ts == TS
    assert ending.event == expected


def test_the_json_document_spliced_from_wire_bytes_is_the_one_dumps_writes() -> None:
    events = [
        *EVENTS[:3],
        StoredEvent(seq=4, ts=TS, event=Text(data=TextData(text='é \u2028 \u0085 "q"'))),
    ]
    bodies = [frame_of(event).body for event in events]
    run = state()
    assert json_document_bytes(run, bodies) == dumps(json_document(run, events)).encode()
    assert json_document_bytes(run, []) == dumps(json_document(run, [])).encode()
