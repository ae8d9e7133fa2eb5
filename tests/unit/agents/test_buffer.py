"""The run buffer: ids from 1, exactly one terminal event, bounded, readable by cursor."""

from __future__ import annotations

import asyncio

import pytest

from agents.buffer import BUFFER_OVERFLOW, RunBuffer
from broker.web.sse import SSEParser
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorEvent,
    Text,
    TextData,
    parse_event,
)


def _text(value: str) -> Text:
    return Text(data=TextData(text=value))


COMPLETE = Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content="x")]))


def _decode(frames: list[bytes]) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    return [(e.id, parse_event(e.json())) for e in parser.feed(b"".join(frames))]


def test_frames_carry_ids_from_one_and_the_event_json() -> None:
    buffer = RunBuffer(10)
    buffer.append(_text("a"))
    buffer.append(_text("b"))
    assert buffer.head == 2
    assert _decode(buffer.frames_after(0)) == [("1", _text("a")), ("2", _text("b"))]
    assert _decode(buffer.frames_after(1)) == [("2", _text("b"))]
    assert buffer.frames_after(2) == []


def test_frames_after_honours_the_limit() -> None:
    buffer = RunBuffer(10)
    for value in "abcde":
        buffer.append(_text(value))
    assert [i for i, _ in _decode(buffer.frames_after(1, limit=2))] == ["2", "3"]


def test_terminal_event_closes_and_later_events_are_ignored() -> None:
    buffer = RunBuffer(10)
    assert buffer.append(_text("a")) is True
    assert buffer.append(COMPLETE) is False
    assert buffer.closed and buffer.terminal_seq == 2
    assert buffer.append(_text("late")) is False
    assert buffer.close(Cancelled(data=CancelledData(by="agent"))) is False
    assert buffer.head == 2 and buffer.last_event == COMPLETE


def test_close_refuses_a_non_terminal_event() -> None:
    with pytest.raises(ValueError, match="not a terminal"):
        RunBuffer(10).close(_text("a"))


def test_overflow_ends_the_run_with_a_buffer_overflow_error_in_the_last_slot() -> None:
    buffer = RunBuffer(4)
    assert [buffer.append(_text(str(i))) for i in range(3)] == [True, True, True]
    assert buffer.append(_text("one too many")) is False
    assert buffer.head == 4 and buffer.terminal_seq == 4
    last = buffer.last_event
    assert isinstance(last, ErrorEvent) and last.data.error_type == BUFFER_OVERFLOW


def test_a_terminal_event_always_fits() -> None:
    buffer = RunBuffer(2)
    buffer.append(_text("a"))
    assert buffer.append(COMPLETE) is False
    assert buffer.last_event == COMPLETE


def test_a_buffer_needs_room_for_one_event_and_the_terminal() -> None:
    with pytest.raises(ValueError):
        RunBuffer(1)


async def test_wait_beyond_wakes_on_append_and_times_out_otherwise() -> None:
    buffer = RunBuffer(10)
    assert await buffer.wait_beyond(0, 0.01) is False
    waiter = asyncio.create_task(buffer.wait_beyond(0, 5))
    await asyncio.sleep(0)
    buffer.append(_text("a"))
    assert await asyncio.wait_for(waiter, 1) is True
    assert await buffer.wait_beyond(0, 5) is True  # already there: no waiting


async def test_wait_beyond_returns_at_once_when_nothing_more_can_come() -> None:
    buffer = RunBuffer(10)
    buffer.append(COMPLETE)
    assert await asyncio.wait_for(buffer.wait_beyond(1, 5), 1) is False
