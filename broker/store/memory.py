"""The in-memory twin of the PostgreSQL adapter, for unit tests without I/O.

`MemoryStore` satisfies every port of `broker.store.ports` with the same
answers as `broker.store.postgres.Store` (the conformance suite,
`tests/integration/test_store_ports.py`, runs both): the same fence in the
flush, the same idempotent inserts, the same errors, the same wake-ups,
delivered on the event loop's next turn as a committed NOTIFY would be.
Values stay in plaintext; time comes from an injected `clock`.

Test controls: `fail_next` makes the next calls raise `DatabaseUnavailable`,
`drop_listeners` cuts every LISTEN subscription, `insert_silently` stores rows
whose wake-up is lost and `send_wake_up` delivers any payload, so outage and
lost-notification paths run without a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.errors import Conflict, DatabaseUnavailable, NotFound, RunInProgress
from broker.store.memory_listening import MemoryListening
from broker.store.notify import cancel_payload, notify_payloads
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
from broker.store.sealing import raw_page
from models.events import ChatMessage, RunStarted, RunStartedData, StoredEvent
from models.ids import IntegrationId, RunId, ThreadId, WorkspaceId, new_id
from models.status import ACTIVE_STATUSES

__all__ = ["MemoryListening", "MemoryStore"]


Payload = Callable[[str], None]
Lost = Callable[[], None]


@dataclass(slots=True)
class _Run:
    record: RunRecord
    lease_expires_at: datetime | None
    events: dict[int, StoredEvent] = field(default_factory=dict)


class MemoryStore:
    """Every port of the store, in dicts; `clock` is the database's `now()`."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.fail_next = 0
        """How many of the next calls raise `DatabaseUnavailable` (an outage)."""
        self._workspaces: dict[str, WorkspaceId] = {}
        self._threads: dict[ThreadId, ThreadRecord] = {}
        self._runs: dict[RunId, _Run] = {}
        self._messages: dict[ThreadId, list[StoredMessage]] = {}
        self._integrations: dict[IntegrationId, tuple[IntegrationRecord, dict[str, Any]]] = {}
        self._listening: list[MemoryListening] = []

    # --- test controls ------------------------------------------------------------------

    async def check_available(self) -> None:
        """Yield to the loop once, as a round trip would; `DatabaseUnavailable` during an outage."""
        await asyncio.sleep(0)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DatabaseUnavailable("the in-memory store is down (fail_next)")

    def drop_listeners(self) -> None:
        """Cut every LISTEN subscription, as a terminated connection would."""
        for listening in list(self._listening):
            self._listening.remove(listening)
            listening.on_lost()

    def insert_silently(self, events: Sequence[PendingEvent]) -> None:
        """Store events with no wake-up, as if their NOTIFY had been lost."""
        self._insert(events)

    def send_wake_up(self, payload: str, *, cancel: bool = False) -> None:
        """Deliver `payload` as is to every listener (malformed ones included)."""
        self._notify([payload], cancel=cancel)

    def forget(self, listening: MemoryListening) -> None:
        if listening in self._listening:
            self._listening.remove(listening)

    def _notify(self, payloads: list[str], *, cancel: bool = False) -> None:
        loop = asyncio.get_running_loop()
        for listening in list(self._listening):
            hook = listening.on_cancel if cancel else listening.on_payload
            for payload in payloads:
                if hook is not None:
                    loop.call_soon(hook, payload)

    def _run(self, run_id: RunId, workspace_id: WorkspaceId | None = None) -> _Run:
        run = self._runs.get(run_id)
        if run is None or (workspace_id is not None and run.record.workspace_id != workspace_id):
            raise NotFound(f"run {run_id} not found")
        return run

    def _update(self, run: _Run, **changes: Any) -> None:
        run.record = replace(run.record, **changes)

    # --- workspaces, threads, runs ------------------------------------------------------

    async def ensure_workspace(self, name: str) -> WorkspaceId:
        await self.check_available()
        return self._workspaces.setdefault(name, WorkspaceId(new_id()))

    async def create_thread(self, workspace_id: WorkspaceId, title: str | None) -> ThreadRecord:
        await self.check_available()
        thread = ThreadRecord(ThreadId(new_id()), workspace_id, title, self.clock())
        self._threads[thread.thread_id] = thread
        return thread

    async def get_thread(self, workspace_id: WorkspaceId, thread_id: ThreadId) -> ThreadRecord:
        await self.check_available()
        thread = self._threads.get(thread_id)
        if thread is None or thread.workspace_id != workspace_id:
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def create_run(
        self,
        thread: ThreadRecord,
        *,
        writer_id: str,
        lease_s: float,
        request_id: str | None = None,
        message: ChatMessage | None = None,
    ) -> RunRecord:
        await self.check_available()
        for other in self._runs.values():
            if (
                other.record.thread_id == thread.thread_id
                and other.record.status in ACTIVE_STATUSES
            ):
                busy = other.record.run_id
                raise RunInProgress(f"thread {thread.thread_id} already has run {busy}", str(busy))
        now = self.clock()
        record = RunRecord(
            RunId(new_id()),
            thread.thread_id,
            thread.workspace_id,
            "streaming",
            1,
            now,
            None,
            None,
            None,
            None,
            writer_id,
            None,
        )
        run = _Run(record, now + timedelta(seconds=lease_s))
        started = RunStarted(
            data=RunStartedData(run_id=str(record.run_id), thread_id=str(thread.thread_id))
        )
        run.events[1] = StoredEvent(seq=1, ts=now, event=started)
        self._runs[record.run_id] = run
        if message is not None:
            self._append_messages(thread.thread_id, record.run_id, [message])
        return record

    async def get_run(self, workspace_id: WorkspaceId, run_id: RunId) -> RunRecord:
        await self.check_available()
        return self._run(run_id, workspace_id).record

    # --- stream events ------------------------------------------------------------------

    def _insert(self, events: Sequence[PendingEvent], runs: set[RunId] | None = None) -> None:
        for item in events:
            run = self._runs.get(item.run_id)
            if run is None:
                raise Conflict(f"run {item.run_id} does not exist")
            if runs is None or item.run_id in runs:
                run.events.setdefault(
                    item.seq, StoredEvent(seq=item.seq, ts=item.ts, event=item.event)
                )

    async def append_events(self, events: Sequence[PendingEvent]) -> None:
        await self.check_available()
        if events:
            self._insert(events)
            self._notify(notify_payloads((e.run_id, e.seq) for e in events))

    async def read_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> EventPage:
        await self.check_available()
        return self._read(run_id, after, limit, max_bytes)

    async def read_raw_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> RawPage:
        return raw_page(await self.read_events(run_id, after, limit, max_bytes))

    def _read(self, run_id: RunId, after: int, limit: int, max_bytes: int | None) -> EventPage:
        """As the SQL: rows within `limit` and `max_bytes` (the events' JSON here), one at least."""
        run = self._runs.get(run_id)
        events, page, size, budget = run.events if run else {}, EventPage(), 0, max_bytes or 2**62
        for seq in sorted(s for s in events if s > after):
            event = events[seq]
            size += len(event.event.model_dump_json().encode()) if max_bytes else 0
            if page and (len(page) >= limit or size > budget):
                page.more = True
                break
            page.append(event)
        return page

    async def flush_runs(
        self,
        writer_id: str,
        lease_s: float,
        runs: Sequence[RunFlush],
        events: Sequence[PendingEvent],
    ) -> dict[RunId, str | None]:
        await self.check_available()
        if not runs:
            return {}
        now = self.clock()
        accepted: dict[RunId, str | None] = {}
        wrote: list[tuple[RunId, int]] = []
        for flush in runs:
            run = self._runs.get(flush.run_id)
            if run is None or run.record.writer_id != writer_id or run.record.status != "streaming":
                continue
            record, ending = run.record, flush.ending
            requested = record.abort_requested_at is not None
            accepted[flush.run_id] = (record.aborted_by or "") if requested else None
            changes: dict[str, Any] = {
                "last_seq": max(record.last_seq, flush.last_seq),
                "agent_event_id": flush.agent_event_id or record.agent_event_id,
            }
            if ending is None:
                run.lease_expires_at = now + timedelta(seconds=lease_s)
            else:
                changes.update(
                    status=ending.status,
                    finished_at=now,
                    error=ending.error or record.error,
                    error_type=ending.error_type or record.error_type,
                    writer_id=None,
                )
                changes["aborted_by"] = record.aborted_by or ending.aborted_by
                run.lease_expires_at = None
            self._update(run, **changes)
            if flush.last_seq > 0:
                wrote.append((flush.run_id, run.record.last_seq))
        self._insert(events, set(accepted))
        for flush in runs:
            if flush.ending and flush.ending.messages and flush.run_id in accepted:
                self._append_messages(flush.thread_id, flush.run_id, flush.ending.messages)
        self._notify(notify_payloads(wrote))
        return accepted

    async def release_runs(self, writer_id: str, run_ids: Sequence[RunId]) -> set[RunId]:
        await self.check_available()
        released: set[RunId] = set()
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run and run.record.writer_id == writer_id and run.record.status == "streaming":
                self._update(run, writer_id=None)
                run.lease_expires_at = self.clock()
                released.add(run_id)
        return released

    async def request_cancel(self, workspace_id: WorkspaceId, run_id: RunId, by: str) -> RunRecord:
        await self.check_available()
        run = self._run(run_id, workspace_id)
        if run.record.status in ACTIVE_STATUSES:
            at, by = run.record.abort_requested_at or self.clock(), run.record.aborted_by or by
            self._update(run, abort_requested_at=at, aborted_by=by)
            self._notify([cancel_payload(run_id, by)], cancel=True)
        return run.record

    async def claim_expired_runs(
        self, writer_id: str, lease_s: float, limit: int
    ) -> list[RunRecord]:
        await self.check_available()
        now = self.clock()
        lease = timedelta(seconds=lease_s)

        def expires(run: _Run) -> datetime:
            return run.lease_expires_at or run.record.created_at + lease

        expired = sorted(
            (
                r
                for r in self._runs.values()
                if r.record.status in ACTIVE_STATUSES and expires(r) <= now
            ),
            key=expires,
        )[:limit]
        for run in expired:
            self._update(run, writer_id=writer_id, status="streaming")
            run.lease_expires_at = now + timedelta(seconds=lease_s)
        return sorted((r.record for r in expired), key=lambda r: r.created_at)

    async def delete_expired_events(self, retention_s: float) -> int:
        await self.check_available()
        cutoff = self.clock() - timedelta(seconds=retention_s)
        deleted = 0
        for run in self._runs.values():
            if run.record.finished_at is not None and run.record.finished_at <= cutoff:
                deleted += len(run.events)
                run.events.clear()
        return deleted

    # --- messages and integrations ------------------------------------------------------

    def _append_messages(
        self, thread_id: ThreadId, run_id: RunId | None, messages: Sequence[ChatMessage]
    ) -> None:
        transcript = self._messages.setdefault(thread_id, [])
        for message in messages:
            transcript.append(
                StoredMessage(new_id(), run_id, len(transcript) + 1, message, self.clock())
            )

    async def list_messages(
        self, thread_id: ThreadId, *, run_id: RunId | None = None
    ) -> list[StoredMessage]:
        await self.check_available()
        transcript = self._messages.get(thread_id, [])
        return [m for m in transcript if run_id is None or m.run_id == run_id]

    async def list_integrations(self, workspace_id: WorkspaceId) -> list[IntegrationRecord]:
        await self.check_available()
        found = [r for r, _ in self._integrations.values() if r.workspace_id == workspace_id]
        return sorted(found, key=lambda r: r.name)

    async def create_integration(
        self, workspace_id: WorkspaceId, kind: str, name: str, credentials: dict[str, Any]
    ) -> IntegrationRecord:
        await self.check_available()
        if any(
            r.workspace_id == workspace_id and r.name == name
            for r, _ in self._integrations.values()
        ):
            raise Conflict(f"an integration named {name!r} already exists in this workspace")
        record = IntegrationRecord(IntegrationId(new_id()), workspace_id, kind, name, self.clock())
        self._integrations[record.integration_id] = (record, dict(credentials))
        return record

    async def integration_credentials(
        self, integration_id: IntegrationId, *, workspace_id: WorkspaceId | None = None
    ) -> tuple[IntegrationRecord, dict[str, Any]]:
        await self.check_available()
        found = self._integrations.get(integration_id)
        if found is None or workspace_id not in (None, found[0].workspace_id):
            raise NotFound(f"integration {integration_id} not found")
        return found[0], dict(found[1])

    # --- read side ----------------------------------------------------------------------

    async def get_run_state(self, workspace_id: WorkspaceId, run_id: RunId) -> RunState:
        await self.check_available()
        run = self._run(run_id, workspace_id)
        head = max([run.record.last_seq, *run.events])
        return RunState(run.record, head, run.record.aborted_by)

    async def read_events_many(
        self, heads: Mapping[RunId, int], limit_per_run: int, max_bytes_per_run: int | None = None
    ) -> dict[RunId, RawPage]:
        await self.check_available()
        found: dict[RunId, RawPage] = {}
        for run_id, head in heads.items():
            page = self._read(run_id, head, limit_per_run, max_bytes_per_run)
            if page:
                found[run_id] = raw_page(page)
        return found

    async def listen(
        self, on_payload: Payload, on_lost: Lost, *, on_cancel: Payload | None = None
    ) -> MemoryListening:
        await self.check_available()
        listening = MemoryListening(self, on_payload, on_lost, on_cancel)
        self._listening.append(listening)
        return listening
