"""The store's records: what every adapter returns and what the flush hands in.

Plain frozen dataclasses with plaintext values (`PendingEvent`, the one the flush
buffers by the thousand, a slotted class); nothing here knows SQL or
encryption, so the write side, the read side and the in-memory adapter share
them without touching a driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from models.events import (
    TERMINAL_EVENT_TYPES,
    ChatMessage,
    StoredEvent,
    StreamEvent,
    parse_event_json,
)
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


class PendingEvent:
    """An event on its way into `raw_stream_events`.

    `body` is the event's compact JSON (UTF-8), encoded once when the event is
    buffered: sealing uses it as it is, and its length is what the flush's
    byte bound counts. `agent_event_id` is the agent's SSE id of this event.

    Only a terminal event keeps its parsed model (its run's ending is made of
    it); any other is kept as its JSON and parsed again only if asked
    (`event`). A buffered event is then one object the cyclic garbage
    collector tracks instead of seven (the model, its data, their dicts and
    field sets): with a backlog of 75,000 events under `broker bench`'s ingest,
    those objects had made each full collection take 250-400 ms.
    """

    __slots__ = ("_event", "agent_event_id", "body", "event_type", "run_id", "seq", "ts")

    def __init__(
        self,
        run_id: RunId,
        seq: int,
        event: StreamEvent,
        ts: datetime,
        agent_event_id: str | None = None,
        body: bytes = b"",
    ) -> None:
        self.run_id = run_id
        self.seq = seq
        self.ts = ts
        self.agent_event_id = agent_event_id
        self.body = body or event.model_dump_json().encode()
        self.event_type: str = event.event_type
        self._event = event if self.terminal else None

    @property
    def terminal(self) -> bool:
        """Whether the event ends its run."""
        return self.event_type in TERMINAL_EVENT_TYPES

    @property
    def event(self) -> StreamEvent:
        """The event; parsed from `body` again unless terminal."""
        return self._event if self._event is not None else parse_event_json(self.body)

    @property
    def size(self) -> int:
        """The event's JSON in bytes."""
        return len(self.body)

    def __repr__(self) -> str:
        return f"PendingEvent(run_id={self.run_id}, seq={self.seq}, {self.event_type})"


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
