"""A frame made from a decrypted row without parsing it is the frame of the parsed event.

Catch-up and tail reads splice the stored JSON into the wire's (`frame_of_raw`)
instead of decoding, validating and encoding every row again; these cases hold
the two paths to the same bytes, terminal flag and event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.store.records import PendingEvent, RawEvent
from broker.store.sealing import encode_event
from models.events import (
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    StoredEvent,
    StreamEvent,
    Text,
    TextData,
    ToolUse,
    ToolUseData,
)
from models.ids import RunId, new_id
from subscribe.frame import frame_of_pending
from subscribe.viewer import frame_of, frame_of_raw

TS = datetime(2026, 11, 30, 3, 4, 5, 678_901, tzinfo=UTC)

EVENTS: list[StreamEvent] = [
    Text(data=TextData(text="plain")),
    Text(data=TextData(text='é ☃ 😀 "quoted" \\ back\nnew\u2028line\u2029\u0085\x00\x1f')),
    ToolUse(
        data=ToolUseData(
            tool_use_id="t1",
            name="search",
            input={"q": "x", "n": 3, "f": 0.1, "big": 1e-07, "nested": {"a": [1, None, True]}},
        )
    ),
    Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="done ✓")])),
    ErrorEvent(data=ErrorData(error="boom", error_type="agent_error")),
]


def same(raw_frame: object, frame: object) -> None:
    assert json.loads(raw_frame.body) == json.loads(frame.body)  # type: ignore[attr-defined]
    assert raw_frame.terminal == frame.terminal  # type: ignore[attr-defined]
    for line_break in (b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xc2\x85"):  # design 4.2
        assert line_break not in raw_frame.body  # type: ignore[attr-defined]
    assert raw_frame.seq == frame.seq  # type: ignore[attr-defined]
    assert raw_frame.event.to_wire() == frame.event.to_wire()  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.event_type)
@pytest.mark.parametrize(
    "ts", [TS, TS.replace(microsecond=0), TS.astimezone(timezone(timedelta(hours=-5)))]
)
def test_a_raw_frame_is_the_parsed_events_frame(event: StreamEvent, ts: datetime) -> None:
    stored = StoredEvent(seq=42, ts=ts, event=event)
    raw = frame_of_raw(RawEvent(42, encode_event(event, ts)))
    same(raw, frame_of(stored))
    assert raw.body.startswith(b'{"seq":42,"event_type":')
    assert raw.sse.startswith(b"id: 42\ndata: {") and raw.ndjson.endswith(b"}\n")


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.event_type)
def test_rows_sealed_by_the_older_encoder_frame_the_same(event: StreamEvent) -> None:
    body = event.model_dump(mode="json")
    body["ts"] = TS.isoformat()
    old = json.dumps(body, separators=(",", ":")).encode()  # ASCII escapes, as before
    same(frame_of_raw(RawEvent(7, old)), frame_of(StoredEvent(seq=7, ts=TS, event=event)))


def test_a_row_of_another_shape_is_parsed_the_long_way() -> None:
    event = Text(data=TextData(text="x"))
    reordered = json.dumps({"ts": TS.isoformat(), "data": {"text": "x"}, "event_type": "text"})
    same(
        frame_of_raw(RawEvent(3, reordered.encode())),
        frame_of(StoredEvent(seq=3, ts=TS, event=event)),
    )


def test_a_row_that_is_not_an_event_fails_loudly() -> None:
    with pytest.raises(ValueError):
        frame_of_raw(RawEvent(3, b'{"event_type":"nope","data":{},"ts":"not a time"}'))
    with pytest.raises(ValueError):
        frame_of_raw(RawEvent(3, b"not json"))


@given(st.text(), st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)))
def test_any_text_frames_the_same_raw_or_parsed(text: str, ts: datetime) -> None:
    event = Text(data=TextData(text=text))
    same(
        frame_of_raw(RawEvent(5, encode_event(event, ts))),
        frame_of(StoredEvent(seq=5, ts=ts, event=event)),
    )


@pytest.mark.parametrize(
    "event",
    [
        Text(data=TextData(text='é \u2028 \u2029 \u0085 "q"')),
        Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="ok")])),
    ],
)
def test_a_just_stored_event_frames_as_its_stored_row_does(event: StreamEvent) -> None:
    ts = datetime(2026, 11, 30, 7, 0, 0, 123456, tzinfo=UTC)
    pending = PendingEvent(RunId(new_id()), 7, event, ts)
    from_row = frame_of_raw(RawEvent(7, encode_event(event, ts)))
    frame = frame_of_pending(pending)
    assert (frame.seq, frame.body, frame.terminal) == (
        from_row.seq,
        from_row.body,
        from_row.terminal,
    )
