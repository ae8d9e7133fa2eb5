"""The store's ports: one small Protocol per role that uses the database.

Each consumer names only what it calls, so it can run against any adapter:
`broker.store.postgres.Store` (the SQL) or `broker.store.memory.MemoryStore`
(the in-memory twin for unit tests). `tests/integration/test_store_ports.py`
holds both to the same contract.

    FlushPort         the flush loop (`broker.write.streams`): fenced write, release
    ProducerReads     what a producer reads before calling the agent
    TailPort          the hub and its listener (`subscribe.hub`): batched reads, LISTEN
    SubscriptionReads what a subscription reads: a run's state, its rows, its transcript
    LifecyclePort     cancellation and takeover: the cancel flag, claim expired, release
    RetentionPort     the retention sweep
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from broker.store.records import (
    EventPage,
    IntegrationRecord,
    PendingEvent,
    RawPage,
    RunFlush,
    RunRecord,
    RunState,
    StoredMessage,
    ThreadRecord,
)
from models.ids import RunId, ThreadId, WorkspaceId

__all__ = [
    "FlushPort",
    "LifecyclePort",
    "Listening",
    "ProducerReads",
    "RetentionPort",
    "SubscriptionReads",
    "TailPort",
]


class Listening(Protocol):
    """An open LISTEN subscription to the wake-ups of `broker.store.notify`."""

    @property
    def backend_pid(self) -> int | None: ...

    def is_closed(self) -> bool: ...

    async def ping(self) -> None:
        """One round trip, or `DatabaseUnavailable`."""

    async def close(self) -> None: ...


class FlushPort(Protocol):
    async def flush_runs(
        self,
        writer_id: str,
        lease_s: float,
        runs: Sequence[RunFlush],
        events: Sequence[PendingEvent],
    ) -> dict[RunId, str | None]:
        """Fenced flush of runs `writer_id` still owns; returns those (their events stored).

        Each maps to the member who asked to cancel it, None if nobody did: the
        poll that backs the cancel wake-up.
        """
        ...

    async def release_runs(self, writer_id: str, run_ids: Sequence[RunId]) -> set[RunId]:
        """Hand streaming runs over; returns those released."""
        ...


class ProducerReads(Protocol):
    async def get_run(self, workspace_id: WorkspaceId, run_id: RunId) -> RunRecord:
        """The run as stored now (its cancel flag: `abort_requested_at`)."""
        ...

    async def read_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> EventPage:
        """A taken-over run's earlier events, for its partial answer on cancel."""
        ...

    async def list_messages(
        self, thread_id: ThreadId, *, run_id: RunId | None = None
    ) -> list[StoredMessage]: ...

    async def list_integrations(self, workspace_id: WorkspaceId) -> list[IntegrationRecord]: ...


class TailPort(Protocol):
    async def read_events_many(
        self, heads: Mapping[RunId, int], limit_per_run: int, max_bytes_per_run: int | None = None
    ) -> dict[RunId, RawPage]:
        """Each run's events with `seq >` its head, in order, decrypted but not parsed: at most
        `limit_per_run` each and `max_bytes_per_run` stored bytes (one event at least); runs
        without one are left out."""
        ...

    async def listen(
        self,
        on_payload: Callable[[str], None],
        on_lost: Callable[[], None],
        *,
        on_cancel: Callable[[str], None] | None = None,
    ) -> Listening:
        """Receive wake-ups (cancel ones too, with `on_cancel`), or `DatabaseUnavailable`."""
        ...


class SubscriptionReads(Protocol):
    async def get_thread(self, workspace_id: WorkspaceId, thread_id: ThreadId) -> ThreadRecord: ...

    async def get_run_state(self, workspace_id: WorkspaceId, run_id: RunId) -> RunState: ...

    async def read_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> EventPage:
        """The run's events with `seq > after`, in order: at most `limit` and `max_bytes`
        stored bytes (one event at least); `EventPage.more` if the table holds more."""
        ...

    async def read_raw_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> RawPage:
        """`read_events`, decrypted but not parsed (for readers that only pass events on)."""
        ...

    async def list_messages(
        self, thread_id: ThreadId, *, run_id: RunId | None = None
    ) -> list[StoredMessage]: ...


class LifecyclePort(Protocol):
    async def request_cancel(self, workspace_id: WorkspaceId, run_id: RunId, by: str) -> RunRecord:
        """Raise the run's cancel flag (first request wins) and send the cancel wake-up.

        `NotFound` if not the caller's; a finished run comes back unchanged.
        """
        ...

    async def claim_expired_runs(
        self, writer_id: str, lease_s: float, limit: int
    ) -> list[RunRecord]:
        """Lease up to `limit` streaming runs whose lease has expired to `writer_id`."""
        ...

    async def release_runs(self, writer_id: str, run_ids: Sequence[RunId]) -> set[RunId]: ...


class RetentionPort(Protocol):
    async def delete_expired_events(self, retention_s: float) -> int: ...
