"""The store's records: what every adapter returns and what the flush hands in.

Plain frozen dataclasses with plaintext values; nothing here knows SQL or
encryption, so the write side, the read side and the in-memory adapter share
them without touching a driver.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from models.events import ChatMessage, StreamEvent
from models.ids import IntegrationId, RunId, ThreadId, WorkspaceId
from models.status import RunStatus

__all__ = [
    "IntegrationRecord",
    "PendingEvent",
    "RunEnding",
    "RunFlush",
    "RunRecord",
    "RunState",
    "StoredMessage",
    "ThreadRecord",
]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event on its way into `raw_stream_events`."""

    run_id: RunId
    seq: int
    event: StreamEvent
    ts: datetime


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
