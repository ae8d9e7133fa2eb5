"""One run's write side in this process: its next seq, what is stored, how it ended.

A producer pushes events into its `RunStream`; the `Writer` (the process's
`broker.write.streams.StreamManager`) buffers and flushes them and reports
back through `halt` and `finish`. `ending_of` turns a terminal event into the
run's final state, by the one mapping of `models.status`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, Protocol

import structlog

from broker.store.records import RunEnding
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    ErrorEvent,
    StreamEvent,
    Text,
)
from models.ids import RunId, ThreadId
from models.status import status_of_event_type

__all__ = ["Outcome", "RunStream", "Writer", "ending_of", "until_stopped"]

log = structlog.get_logger(__name__)

Outcome = Literal["stored", "lease_lost", "released", "abandoned"]
"""How a stream closed: terminal stored; fenced out; handed over at shutdown;
handed over with events that could not be stored (database down at shutdown)."""


class Writer(Protocol):
    """What a `RunStream` asks of the stream manager."""

    def push(self, stream: RunStream, event: StreamEvent, agent_event_id: str | None) -> int | None:
        """Buffer `event` for `stream`; its seq, or None if the stream takes no more."""
        ...

    async def next_progress(self) -> None:
        """Return after the next flush or stream closure."""
        ...


def _fit(text: str | None, limit: int) -> str | None:
    """Make an agent's string fit its `runs` column (a width; no NUL): it must not fail a flush."""
    return None if text is None else text.replace("\x00", "")[:limit]


def ending_of(event: StreamEvent, partial: Sequence[ChatMessage] = ()) -> RunEnding | None:
    """The run's final state for a terminal event (None for any other event).

    `partial`: the transcript a cancelled run had produced so far, kept with its end.
    """
    error_type = event.data.error_type if isinstance(event, ErrorEvent) else None
    status = status_of_event_type(event.event_type, error_type)
    if status is None:
        return None
    if isinstance(event, Complete):
        return RunEnding(status, messages=tuple(event.data.new_messages))
    if isinstance(event, ErrorEvent):
        return RunEnding(
            status,
            error=_fit(event.data.error, 4000),
            error_type=_fit(event.data.error_type, 100),
        )
    if isinstance(event, Cancelled):
        return RunEnding(status, aborted_by=_fit(event.data.by, 200), messages=tuple(partial))
    return RunEnding(status)


class RunStream:
    """One run's write side in this process: its next seq, what is stored, how it ended."""

    def __init__(
        self,
        writer: Writer,
        run_id: RunId,
        thread_id: ThreadId,
        last_seq: int,
        now: float,
        request_id: str | None,
    ) -> None:
        self._writer = writer
        self.run_id = run_id
        self.thread_id = thread_id
        self.log = log.bind(run_id=str(run_id), request_id=request_id)
        self.next_seq = last_seq + 1
        self.first_seq = last_seq + 1
        """The first seq this process writes (above 2: the run was taken over)."""
        self.answer: list[str] = []
        """The `text` deltas this process wrote: a cancelled run's partial answer."""
        self.partial: tuple[ChatMessage, ...] = ()
        """The partial transcript stored with a `cancelled` end (`ending_of`)."""
        self.stored_seq = last_seq
        self.unflushed = 0
        self.terminal_seq: int | None = None
        self.renewed_at = now
        self.outcome: Outcome | None = None
        self.halt_reason: str | None = None
        self.halted = asyncio.Event()
        """Set when the stream takes no more events: the producer must stop reading."""
        self.closed = asyncio.Event()
        """Set when nothing more will be written for this run by this process."""
        self.cancel_by: str | None = None
        """The member who asked to cancel the run, once someone did."""
        self.cancel_requested = asyncio.Event()
        """Set when a cancel was asked for (wake-up or flag): the producer stops the run."""

    def push(self, event: StreamEvent, *, agent_event_id: str | None = None) -> int | None:
        """Buffer an event (with the agent's SSE id); its seq, or None once the stream is done."""
        seq = self._writer.push(self, event, agent_event_id)
        if seq is not None and isinstance(event, Text):
            self.answer.append(event.data.text)
        return seq

    def cancel(self, by: str | None, partial: Sequence[ChatMessage]) -> int | None:
        """End the run `cancelled`, its partial transcript stored in the same flush."""
        self.partial = tuple(partial)
        return self.push(Cancelled(data=CancelledData(by=by)))

    async def wait_stored(self, seq: int) -> bool:
        """Wait until `seq` is committed (True) or the stream closed without it (False)."""
        while self.stored_seq < seq and self.outcome is None:
            await self._writer.next_progress()
        return self.stored_seq >= seq

    async def wait_closed(self) -> Outcome:
        await self.closed.wait()
        assert self.outcome is not None
        return self.outcome

    def request_cancel(self, by: str) -> None:
        """Someone asked to cancel the run (the first request's member is kept)."""
        if self.cancel_by is None:
            self.cancel_by = by
            self.log.info("run_cancel_requested", by=by)
        self.cancel_requested.set()

    def halt(self, reason: str) -> None:
        """Take no more events (the first reason is kept): the producer stops reading."""
        if self.halt_reason is None:
            self.halt_reason = reason
        self.halted.set()

    def finish(self, outcome: Outcome) -> None:
        """Nothing more will be written for this run by this process."""
        self.outcome = outcome
        self.halt(outcome)
        self.closed.set()


async def until_stopped(stream: RunStream, work: Coroutine[Any, Any, None]) -> None:
    """Run `work`, but stop it as soon as the stream is halted (lease lost, overflow) or
    its run is to be cancelled."""
    task = asyncio.create_task(work)
    halted = asyncio.create_task(stream.halted.wait())
    cancelled = asyncio.create_task(stream.cancel_requested.wait())
    try:
        await asyncio.wait({task, halted, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, halted, cancelled):
            pending.cancel()
        await asyncio.gather(task, halted, cancelled, return_exceptions=True)
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc
