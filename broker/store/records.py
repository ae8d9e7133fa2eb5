"""The store's records: what every adapter returns and what the flush hands in.

Plain frozen dataclasses with plaintext values; nothing here knows SQL or
encryption, so the write side, the read side and the in-memory adapter share
them without touching a driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from models.events import ChatMessage, StoredEvent, StreamEvent
from models.ids import IntegrationId, RunId, ThreadId, WorkspaceId
from models.status import RunStatus

__all__ = [
    "EventPage",
    "IntegrationRecord",
    "PendingEvent",
    "RawEvent",
    "RawPage",
    "RunEnding",
    "RunFlush",
    "RunRecord",
    "RunState",
    "StoredMessage",
    "ThreadRecord",
]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event on its way into `raw_stream_events`.

    `body` is the event's compact JSON (UTF-8), encoded once when the event is
    buffered: sealing uses it as it is, and its length is what the flush's
    byte bound counts. `agent_event_id` is the agent's SSE id of this event.
    """

    run_id: RunId
    seq: int
    event: StreamEvent
    ts: datetime
    agent_event_id: str | None = None
    body: bytes = b""

    def __post_init__(self) -> None:
        if not self.body:
            object.__setattr__(self, "body", self.event.model_dump_json().encode())

    @property
    def size(self) -> int:
        """The event's JSON in bytes."""
        return len(self.body)


class EventPage(list[StoredEvent]):
    """A run's events read in seq order, and whether the table held more after the last.

    A plain list to every caller that only iterates; `more` is what lets a
    reader bounded by rows *and* bytes tell "cut by a bound" from "the end".
    """

    def __init__(self, events: Iterable[StoredEvent] = (), *, more: bool = False) -> None:
        super().__init__(events)
        self.more = more


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A stored event as it was sealed: its JSON with `ts` (`broker.store.sealing`),
    decrypted and authenticated but not parsed, for readers that only pass it on."""

    seq: int
    plaintext: bytes


class RawPage(list[RawEvent]):
    """`EventPage` of raw events."""

    def __init__(self, events: Iterable[RawEvent] = (), *, more: bool = False) -> None:
        super().__init__(events)
        self.more = more


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    thread_id: ThreadId
    workspace_id: WorkspaceId
    title: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: RunId
    thread_id: ThreadId
    workspace_id: WorkspaceId
    status: RunStatus
    last_seq: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    error_type: str | None
    agent_event_id: str | None
    """The agent's SSE id of the last stored event (column `runs.agent_cursor`)."""
    writer_id: str | None
    abort_requested_at: datetime | None
    aborted_by: str | None = None
    """The member who asked to cancel the run (with `abort_requested_at`)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message of a thread's persisted transcript, decrypted."""

    message_id: uuid.UUID
    run_id: RunId | None
    position: int
    message: ChatMessage
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IntegrationRecord:
    """An integration of a workspace, without its credentials."""

    integration_id: IntegrationId
    workspace_id: WorkspaceId
    kind: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunEnding:
    """How a run ended, from its terminal event: written with the flush that stores it."""

    status: RunStatus
    error: str | None = None
    error_type: str | None = None
    aborted_by: str | None = None
    messages: tuple[ChatMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class RunFlush:
    """One run's part of a flush: its new head (0: lease renewal only), agent id and ending."""

    run_id: RunId
    thread_id: ThreadId
    last_seq: int
    agent_event_id: str | None = None
    """The agent's SSE id of the run's last event in this flush (kept in `runs.agent_cursor`)."""
    ending: RunEnding | None = None


@dataclass(frozen=True, slots=True)
class RunState:
    """A run as a viewer needs it: its record, its head and who cancelled it."""

    record: RunRecord
    head: int
    """The highest seq the run has: `runs.last_seq`, or the table's if that is ahead."""
    aborted_by: str | None
