"""The terminal view of a run (`broker.terminal`) and the client's wire decoding, without I/O."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console

from broker.client import parse_wire_event
from broker.terminal import RunView, ToolCall, render
from models.events import StoredEvent, parse_event


def stored(seq: int, event_type: str, data: dict[str, Any]) -> StoredEvent:
    event = parse_event({"event_type": event_type, "data": data})
    return StoredEvent(seq=seq, ts=datetime(2026, 11, 30, tzinfo=UTC), event=event)


def screen(view: RunView, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(render(view))
    return console.export_text()


def fold(*events: tuple[str, dict[str, Any]]) -> RunView:
    view = RunView()
    for seq, (event_type, data) in enumerate(events, start=1):
        view.apply(stored(seq, event_type, data))
    return view


TOOL_RUN = (
    ("run_started", {"run_id": "r", "thread_id": "t"}),
    ("reasoning_text", {"text": "Let me "}),
    ("reasoning_text", {"text": "count."}),
    ("tool_use", {"tool_use_id": "u1", "name": "query", "input": {"sql": "select 1"}}),
    ("tool_stream", {"tool_use_id": "u1", "text": "running"}),
    (
        "tool_result",
        {"tool_use_id": "u1", "output": {"columns": ["month", "n"], "rows": [["2026-10", 42]]}},
    ),
    ("text", {"text": "There were **42** "}),
    ("text", {"text": "orders."}),
    ("complete", {"new_messages": [{"role": "assistant", "content": "There were 42 orders."}]}),
)


def test_view_folds_deltas_into_blocks_in_order() -> None:
    view = fold(*TOOL_RUN)
    kinds = [b.kind if not isinstance(b, ToolCall) else "tool" for b in view.blocks]
    assert kinds == ["reasoning", "tool", "answer"]
    assert view.answer == "There were **42** orders."
    call = view.blocks[1]
    assert isinstance(call, ToolCall)
    assert (call.progress, call.done, call.output["rows"]) == ("running", True, [["2026-10", 42]])
    assert view.status == "completed" and view.finished


def test_render_dims_reasoning_tables_rows_and_renders_the_answer_as_markdown() -> None:
    text = screen(fold(*TOOL_RUN))
    assert "Let me count." in text
    assert "tool query" in text and '{"sql": "select 1"}' in text
    assert "month" in text and "2026-10" in text and "42" in text
    assert "There were 42 orders." in text  # Markdown: the ** are rendered, not shown
    assert text.rstrip().endswith("● completed")
    assert text.count("There were") == 1


def test_complete_without_deltas_shows_the_kept_transcript() -> None:
    # After retention only the terminal event is left; its messages are the answer.
    view = fold(("complete", {"new_messages": [{"role": "assistant", "content": "Done."}]}))
    assert view.answer == "Done."
    assert "Done." in screen(view)


@pytest.mark.parametrize(
    ("event", "status", "shown"),
    [
        (("error", {"error": "agent gone", "error_type": "producer_lost"}), "failed", "agent gone"),
        (("cancelled", {"by": "member-1"}), "cancelled", "cancelled by member-1"),
    ],
)
def test_failed_and_cancelled_runs_say_so(
    event: tuple[str, dict[str, Any]], status: str, shown: str
) -> None:
    view = fold(("text", {"text": "partial"}), event)
    assert view.status == status
    assert shown in screen(view)


def test_connection_state_shows_until_the_run_ends() -> None:
    view = RunView()
    view.set_connection("reconnecting")
    assert "● reconnecting" in screen(view)
    view.apply(stored(1, "complete", {"new_messages": []}))
    view.set_connection("live")  # a late callback cannot undo the end
    assert view.status == "completed"


def test_tool_errors_and_non_tabular_results_are_shown_as_text() -> None:
    view = fold(
        ("tool_use", {"tool_use_id": "a", "name": "query", "input": {}}),
        ("tool_result", {"tool_use_id": "a", "output": "permission denied", "is_error": True}),
        ("tool_use", {"tool_use_id": "b", "name": "lookup", "input": {}}),
        ("tool_result", {"tool_use_id": "b", "output": {"rows": "not a list"}}),
        ("tool_stream", {"tool_use_id": "unknown", "text": "ignored"}),
    )
    text = screen(view)
    assert "permission denied" in text and '{"rows": "not a list"}' in text
    assert "ignored" not in text


def test_wire_events_decode_to_typed_stored_events() -> None:
    wire = {"seq": 3, "event_type": "text", "data": {"text": "hi"}, "ts": "2026-11-30T00:00:00Z"}
    event = parse_wire_event(wire)
    assert event.seq == 3 and event.event.event_type == "text"
    assert event.to_wire()["data"] == {"text": "hi"}


@pytest.mark.parametrize(
    "bad",
    [
        {"seq": 0, "event_type": "text", "data": {"text": "x"}, "ts": "2026-11-30T00:00:00Z"},
        {"seq": 1, "event_type": "nope", "data": {}, "ts": "2026-11-30T00:00:00Z"},
        {"seq": 1, "event_type": "text", "data": {}, "ts": "2026-11-30T00:00:00Z"},
        {"seq": 1, "event_type": "text", "data": {"text": "x"}},
    ],
)
def test_malformed_wire_events_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_wire_event(bad)


def test_a_wire_event_must_be_an_object() -> None:
    with pytest.raises(TypeError):
        parse_wire_event([1, 2])
