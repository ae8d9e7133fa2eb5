"""The run registry: one supervisor per run, one terminal event, grace, forgetting, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import pytest

from agents.cancel import CancelToken
from agents.errors import RunInFlight, RunNotFound
from agents.registry import Run, RunRegistry
from models.events import (
    Cancelled,
    CancelledData,
    Complete,
    CompleteData,
    ErrorEvent,
    StreamEvent,
    Text,
    TextData,
)

COMPLETE = Complete(data=CompleteData(new_messages=[]))


def _text(value: str) -> Text:
    return Text(data=TextData(text=value))


def _source(
    *events: StreamEvent, block: bool = False, closed: list[str] | None = None
) -> Callable[[CancelToken], AsyncGenerator[StreamEvent, None]]:
    async def source(token: CancelToken) -> AsyncGenerator[StreamEvent, None]:
        try:
            for event in events:
                yield event
            if block:
                await asyncio.Event().wait()
        finally:
            if closed is not None:
                closed.append("closed")

    return source


async def _finished(run: Run) -> None:
    assert run.task is not None
    await asyncio.wait_for(run.task, 2)


async def test_a_run_buffers_its_events_and_ends_with_its_terminal() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    run = registry.start("r1", "req", _source(_text("a"), _text("b"), COMPLETE))
    await _finished(run)
    assert run.buffer.head == 3 and run.buffer.last_event == COMPLETE
    assert registry.get("r1") is run  # kept until a reader is sent the terminal
    await registry.aclose()


async def test_cancel_appends_cancelled_at_once_and_tears_the_source_down() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    closed: list[str] = []
    run = registry.start("r1", "req", _source(_text("a"), block=True, closed=closed))
    await asyncio.sleep(0.01)
    assert run.buffer.head == 1
    registry.cancel("r1", by="agent")
    registry.cancel("r1", by="someone else")
    await _finished(run)
    assert run.buffer.last_event == Cancelled(data=CancelledData(by="agent"))
    assert run.buffer.head == 2
    assert closed == ["closed"]
    await registry.aclose()


async def test_cancel_after_the_terminal_changes_nothing() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    run = registry.start("r1", "req", _source(COMPLETE))
    await _finished(run)
    registry.cancel("r1", by="agent")
    await asyncio.sleep(0.01)
    assert run.buffer.head == 1 and run.buffer.last_event == COMPLETE
    await registry.aclose()


async def test_a_source_that_raises_ends_with_an_internal_error() -> None:
    async def broken(token: CancelToken) -> AsyncGenerator[StreamEvent, None]:
        yield _text("a")
        raise RuntimeError("bug")

    registry = RunRegistry(grace_s=5, buffer_max=100)
    run = registry.start("r1", "req", broken)
    await _finished(run)
    last = run.buffer.last_event
    assert isinstance(last, ErrorEvent) and last.data.error_type == "internal_error"
    assert run.buffer.head == 2
    await registry.aclose()


async def test_a_source_without_a_terminal_event_still_ends_with_one() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    run = registry.start("r1", "req", _source(_text("a")))
    await _finished(run)
    assert run.buffer.closed and isinstance(run.buffer.last_event, ErrorEvent)
    await registry.aclose()


async def test_overflow_stops_the_source_and_ends_with_buffer_overflow() -> None:
    closed: list[str] = []
    registry = RunRegistry(grace_s=5, buffer_max=3)
    run = registry.start(
        "r1", "req", _source(*[_text(str(i)) for i in range(10)], block=True, closed=closed)
    )
    await _finished(run)
    last = run.buffer.last_event
    assert isinstance(last, ErrorEvent) and last.data.error_type == "buffer_overflow"
    assert run.buffer.head == 3 and closed == ["closed"]
    await registry.aclose()


async def test_ids_are_unique_while_in_flight_and_unknown_ids_are_not_found() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    registry.start("r1", "req", _source(block=True))
    with pytest.raises(RunInFlight):
        registry.start("r1", "req", _source(COMPLETE))
    with pytest.raises(RunNotFound):
        registry.get("nope")
    with pytest.raises(RunNotFound):
        registry.cancel("nope", by="agent")
    await registry.aclose()


async def test_delivering_the_terminal_forgets_the_run() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    run = registry.start("r1", "req", _source(COMPLETE))
    await _finished(run)
    registry.attach(run)
    registry.detach(run, delivered_terminal=True)
    assert "r1" not in registry
    # The id is free again.
    again = registry.start("r1", "req", _source(COMPLETE))
    await _finished(again)
    await registry.aclose()


async def test_no_reader_past_the_grace_period_cancels_and_forgets_the_run() -> None:
    registry = RunRegistry(grace_s=0.05, buffer_max=100)
    run = registry.start("r1", "req", _source(_text("a"), block=True))
    registry.attach(run)
    registry.detach(run, delivered_terminal=False)
    assert "r1" in registry
    await _finished(run)
    assert "r1" not in registry
    assert run.buffer.last_event == Cancelled(data=CancelledData(by="detached"))
    await registry.aclose()


async def test_a_reader_attaching_within_the_grace_period_keeps_the_run() -> None:
    registry = RunRegistry(grace_s=0.05, buffer_max=100)
    run = registry.start("r1", "req", _source(_text("a"), block=True))
    registry.attach(run)
    registry.detach(run, delivered_terminal=False)
    registry.attach(run)
    await asyncio.sleep(0.1)
    assert registry.get("r1") is run and not run.token.cancelled
    await registry.aclose()


async def test_shutdown_cancels_every_run_and_leaves_no_task() -> None:
    registry = RunRegistry(grace_s=5, buffer_max=100)
    runs = [registry.start(f"r{i}", "req", _source(_text("a"), block=True)) for i in range(3)]
    await asyncio.sleep(0.01)
    await registry.aclose()
    for run in runs:
        assert run.task is not None and run.task.done()
        assert run.buffer.last_event == Cancelled(data=CancelledData(by="shutdown"))
    assert len(registry) == 0
    with pytest.raises(RuntimeError):
        registry.start("late", "req", _source(COMPLETE))
