"""The event union: every type round-trips; unknown or incomplete events are rejected."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from models.events import (
    TERMINAL_EVENT_TYPES,
    StoredEvent,
    event_json_schema,
    is_terminal,
    parse_event,
    parse_event_json,
)

EXAMPLES: dict[str, dict[str, Any]] = {
    "run_started": {"run_id": "r1", "thread_id": "t1"},
    "reasoning_text": {"text": "thinking…"},
    "text": {"text": "Hel"},
    "tool_use": {"tool_use_id": "tu1", "name": "query_integration", "input": {"sql": "select 1"}},
    "tool_stream": {"tool_use_id": "tu1", "text": "running"},
    "tool_result": {"tool_use_id": "tu1", "output": {"rows": [[1]]}, "is_error": False},
    "message": {"message": {"role": "assistant", "content": "hi"}},
    "complete": {"new_messages": [{"role": "assistant", "content": "hi"}]},
    "error": {"error": "boom", "error_type": "producer_lost"},
    "cancelled": {"by": "member-1"},
}


def test_examples_cover_every_type_in_the_schema() -> None:
    schema = event_json_schema()
    types = {
        definition["properties"]["event_type"]["const"]
        for definition in schema["$defs"].values()
        if "event_type" in definition.get("properties", {})
    }
    assert types == set(EXAMPLES)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_event_type_round_trips(event_type: str) -> None:
    raw = {"event_type": event_type, "data": EXAMPLES[event_type]}
    event = parse_event(raw)
    assert event.event_type == event_type
    assert event.model_dump(mode="json") == raw
    assert parse_event_json(event.model_dump_json()) == event
    assert is_terminal(event) == (event_type in TERMINAL_EVENT_TYPES)


def test_unknown_event_type_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_event({"event_type": "telepathy", "data": {}})


@pytest.mark.parametrize(
    "raw",
    [
        {"event_type": "text", "data": {}},
        {"event_type": "text"},
        {"data": {"text": "x"}},
        {"event_type": "tool_use", "data": {"tool_use_id": "a", "name": "b"}},
        {"event_type": "error", "data": {"error": "boom"}},
        {"event_type": "text", "data": {"text": "x", "extra": 1}},
    ],
)
def test_missing_or_extra_fields_are_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_event(raw)


def test_stored_event_wire_form_is_flat_with_utc_millis() -> None:
    stored = StoredEvent(
        seq=17,
        ts=datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC),
        event=parse_event({"event_type": "text", "data": {"text": "Hel"}}),
    )
    assert stored.to_wire() == {
        "seq": 17,
        "event_type": "text",
        "data": {"text": "Hel"},
        "ts": "2026-11-21T10:00:00.123Z",
    }
