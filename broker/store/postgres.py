"""The PostgreSQL adapter: every port of `broker.store.ports`, holding only SQL.

Statements are SQLAlchemy Core (or the `unnest` texts of
`broker.store.statements`), one method each with a one-line docstring;
nothing else in the project talks SQL. Values are sealed on the way in and
opened on the way out (`broker.store.sealing`), so callers only ever see
typed, plaintext records (`broker.store.records`). Driver errors are
translated to `broker.errors` where they enter (`broker.store.connection`).
The transcript's and the integrations' statements live in
`broker.store.messages` and `broker.store.integration_rows`.

Writes of stream events are one round trip for any number of runs
(`unnest` of parallel arrays), because the flush loop's cost must grow with
flushes, not with events.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from broker.errors import Conflict, NotFound, RunInProgress
from broker.store.connection import DriverStatement
from broker.store.event_reads import EventReads
from broker.store.integration_rows import IntegrationQueries
from broker.store.listening import Listening, listen
from broker.store.messages import MessageQueries
from broker.store.notify import cancel_payload, notify_payloads
from broker.store.records import (
    PendingEvent,
    RunFlush,
    RunRecord,
    RunState,
    ThreadRecord,
)
from broker.store.sealing import title_aad
from broker.store.statements import CANCEL_NOTIFY, FLUSH, INSERT_EVENTS, NOTIFY
from broker.store.statements import events as _events
from broker.store.statements import runs as _runs
from broker.store.statements import threads as _threads
from broker.store.statements import workspaces as _workspaces
from models.events import ChatMessage, RunStarted, RunStartedData
from models.ids import RunId, ThreadId, WorkspaceId, new_id
from models.status import ACTIVE_STATUSES

__all__ = ["SEAL_INLINE_BYTES", "Store"]

SEAL_INLINE_BYTES = 64 * 1024
"""A flush whose events' JSON is larger than this is sealed in a worker thread."""

Hook = Callable[[str], None]


def _run_record(row: sa.Row[Any]) -> RunRecord:
    return RunRecord(
        run_id=RunId(row.id),
        thread_id=ThreadId(row.thread_id),
        workspace_id=WorkspaceId(row.workspace_id),
        status=row.status,
        last_seq=row.last_seq,
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
        error_type=row.error_type,
        agent_event_id=row.agent_cursor,
        writer_id=row.writer_id,
        abort_requested_at=row.abort_requested_at,
        aborted_by=row.aborted_by,
    )


class Store(EventReads, MessageQueries, IntegrationQueries):
    """The PostgreSQL adapter: every port of `broker.store.ports`, one method per statement."""

    # --- workspaces and threads ---------------------------------------------------

    async def ensure_workspace(self, name: str) -> WorkspaceId:
        """Return the id of the workspace called `name`, creating it if missing."""
        stmt = (
            insert(_workspaces)
            .values(id=new_id(), name=name)
            .on_conflict_do_update(index_elements=["name"], set_={"name": name})
            .returning(_workspaces.c.id)
        )
        async with self.transaction() as conn:
            return WorkspaceId((await conn.execute(stmt)).scalar_one())

    async def create_thread(self, workspace_id: WorkspaceId, title: str | None) -> ThreadRecord:
        """Insert a thread into a workspace."""
        thread_id = new_id()
        sealed = (
            None if title is None else self.keyring.encrypt(title.encode(), title_aad(thread_id))
        )
        stmt = (
            _threads.insert()
            .values(
                id=thread_id,
                workspace_id=workspace_id,
                title_key_id=sealed.key_id if sealed else None,
                title=sealed.blob if sealed else None,
            )
            .returning(*_threads.c)
        )
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one()
        return self._thread_record(row)

    def _thread_record(self, row: sa.Row[Any]) -> ThreadRecord:
        """A thread row with its title opened."""
        title = None
        if row.title is not None:
            title = self.keyring.decrypt(row.title_key_id, row.title, title_aad(row.id)).decode()
        return ThreadRecord(ThreadId(row.id), WorkspaceId(row.workspace_id), title, row.created_at)

    async def get_thread(self, workspace_id: WorkspaceId, thread_id: ThreadId) -> ThreadRecord:
        """A thread of the workspace, or `NotFound` (also for another workspace's)."""
        stmt = sa.select(_threads).where(
            _threads.c.id == thread_id, _threads.c.workspace_id == workspace_id
        )
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return self._thread_record(row)

    # --- runs -------------------------------------------------------------------------

    async def create_run(
        self,
        thread: ThreadRecord,
        *,
        writer_id: str,
        lease_s: float,
        request_id: str | None = None,
        message: ChatMessage | None = None,
    ) -> RunRecord:
        """Insert a streaming run leased to `writer_id`, with `run_started` at seq 1.

        `message` (the user's) is appended to the thread's transcript in the same
        transaction, so a run never exists without the message that started it.
        `Conflict` when the thread already has a run pending or streaming (a
        partial unique index says so, so two replicas cannot both start one).
        """
        run_id = RunId(new_id())
        now = datetime.now(UTC)
        started = RunStarted(
            data=RunStartedData(run_id=str(run_id), thread_id=str(thread.thread_id))
        )
        insert_run = (
            _runs.insert()
            .values(
                id=run_id,
                thread_id=thread.thread_id,
                workspace_id=thread.workspace_id,
                status="streaming",
                streaming_started_at=sa.func.now(),
                last_seq=1,
                writer_id=writer_id,
                lease_expires_at=sa.func.now() + sa.text(f"interval '{float(lease_s)} seconds'"),
                request_id=request_id,
            )
            .returning(*_runs.c)
        )
        arrays = self.seal_events([PendingEvent(run_id, 1, started, now)])
        try:
            async with self.transaction() as conn:
                row = (await conn.execute(insert_run)).one()
                await conn.execute(INSERT_EVENTS, arrays)
                if message is not None:
                    await self.insert_messages(conn, thread.thread_id, run_id, [message])
        except Conflict:
            busy = await self._active_run(thread.thread_id)
            raise RunInProgress(
                f"thread {thread.thread_id} already has run {busy or '(just finished)'} "
                "in progress; wait for it to end or cancel it, then start another",
                run_id=str(busy) if busy else None,
            ) from None
        return _run_record(row)

    async def _active_run(self, thread_id: ThreadId) -> RunId | None:
        """The thread's run pending or streaming, if any."""
        stmt = sa.select(_runs.c.id).where(
            _runs.c.thread_id == thread_id, _runs.c.status.in_(("pending", "streaming"))
        )
        async with self.transaction() as conn:
            found = (await conn.execute(stmt)).scalar_one_or_none()
        return RunId(found) if found is not None else None

    async def get_run(self, workspace_id: WorkspaceId, run_id: RunId) -> RunRecord:
        """A run of the workspace, or `NotFound` (also for another workspace's)."""
        stmt = sa.select(_runs).where(_runs.c.id == run_id, _runs.c.workspace_id == workspace_id)
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return _run_record(row)

    # --- stream events ----------------------------------------------------------------

    async def append_events(self, events: Sequence[PendingEvent]) -> None:
        """Insert events of any number of runs (idempotent by key) and NOTIFY on commit.

        Unfenced: for the broker's own events and tests. Producers flush through
        the fenced write instead.
        """
        if events:
            async with self.transaction() as conn:
                await conn.execute(INSERT_EVENTS, self.seal_events(events))
                await conn.execute(
                    NOTIFY,
                    {"payloads": notify_payloads((e.run_id, e.seq) for e in events)},
                )

    # --- write side ---------------------------------------------------------------------

    async def flush_runs(
        self,
        writer_id: str,
        lease_s: float,
        runs: Sequence[RunFlush],
        events: Sequence[PendingEvent],
    ) -> dict[RunId, str | None]:
        """Fenced flush: renew leases, store events, finish runs; returns the runs still ours.

        Each maps to who asked to cancel it (None: nobody). Events of runs that fail
        the fence (another writer, or no longer streaming) are not written; the caller
        stops their producers. Idempotent by key: a batch whose commit was lost can be resent.
        """
        if not runs:
            return {}
        if sum(item.size for item in events) > SEAL_INLINE_BYTES:
            # AES-GCM releases the GIL: a large batch is sealed off the event loop.
            sealed = await asyncio.to_thread(self.seal_events, events)
        else:
            sealed = self.seal_events(events)
        params: dict[str, Any] = {
            "run_ids": [r.run_id for r in runs],
            "last_seqs": [r.last_seq for r in runs],
            "agent_event_ids": [r.agent_event_id for r in runs],
            "statuses": [r.ending.status if r.ending else None for r in runs],
            "errors": [r.ending.error if r.ending else None for r in runs],
            "error_types": [r.ending.error_type if r.ending else None for r in runs],
            "aborted_bys": [r.ending.aborted_by if r.ending else None for r in runs],
            "lease_s": float(lease_s),
            "writer_id": writer_id,
            "event_run_ids": sealed["run_ids"],
            "seqs": sealed["seqs"],
            "key_ids": sealed["key_ids"],
            "payloads": sealed["payloads"],
        }
        if not any(run.ending and run.ending.messages for run in runs):
            # One statement is one transaction: no BEGIN and COMMIT round trips, and
            # straight through the driver (`Connected.driver`).
            statement = self._flush_statement
            async with self.driver() as conn:
                rows = await conn.fetch(statement.sql, *statement.args(params))
            return {RunId(row["id"]): row["cancel_by"] for row in rows}
        async with self.transaction() as conn:
            accepted = {RunId(row.id): row.cancel_by for row in await conn.execute(FLUSH, params)}
            for run in runs:
                if run.ending and run.ending.messages and run.run_id in accepted:
                    await self.insert_messages(conn, run.thread_id, run.run_id, run.ending.messages)
        return accepted

    @functools.cached_property
    def _flush_statement(self) -> DriverStatement:
        return DriverStatement(FLUSH, self.engine.dialect)

    async def release_runs(self, writer_id: str, run_ids: Sequence[RunId]) -> set[RunId]:
        """Hand streaming runs over: writer cleared, lease expired now; returns those released."""
        if not run_ids:
            return set()
        stmt = (
            _runs.update()
            .where(
                _runs.c.id.in_(run_ids),
                _runs.c.writer_id == writer_id,
                _runs.c.status == "streaming",
            )
            .values(writer_id=None, lease_expires_at=sa.func.now())
            .returning(_runs.c.id)
        )
        async with self.transaction() as conn:
            return {RunId(row.id) for row in await conn.execute(stmt)}

    # --- lifecycle: the cancel flag and the takeover of expired leases ---------------

    async def request_cancel(self, workspace_id: WorkspaceId, run_id: RunId, by: str) -> RunRecord:
        """Raise the cancel flag of an active run (first request wins); `NotFound` if not ours.

        Its wake-up (`broker.store.notify`), naming whose request won, is sent in the
        same transaction. A run that already ended comes back unchanged, sending nothing.
        """
        stmt = (
            _runs.update()
            .where(
                _runs.c.id == run_id,
                _runs.c.workspace_id == workspace_id,
                _runs.c.status.in_(ACTIVE_STATUSES),
            )
            .values(
                abort_requested_at=sa.func.coalesce(_runs.c.abort_requested_at, sa.func.now()),
                aborted_by=sa.func.coalesce(_runs.c.aborted_by, by),
            )
            .returning(*_runs.c)
        )
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
            if row is not None:
                await conn.execute(
                    CANCEL_NOTIFY, {"payload": cancel_payload(row.id, row.aborted_by)}
                )
        return _run_record(row) if row is not None else await self.get_run(workspace_id, run_id)

    async def claim_expired_runs(
        self, writer_id: str, lease_s: float, limit: int
    ) -> list[RunRecord]:
        """Lease up to `limit` active runs whose lease expired to `writer_id`, oldest first.

        `FOR UPDATE SKIP LOCKED`: two sweeping replicas never claim the same run. A
        `pending` run (no lease: counted from its creation) becomes `streaming`.
        """
        lease = sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.cast(float(lease_s), sa.Float))
        expires = sa.func.coalesce(_runs.c.lease_expires_at, _runs.c.created_at + lease)
        expired = (
            sa.select(_runs.c.id)
            .where(_runs.c.status.in_(ACTIVE_STATUSES), expires <= sa.func.now())
            .order_by(expires)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            _runs.update()
            .where(_runs.c.id.in_(expired.scalar_subquery()))
            .values(
                writer_id=writer_id,
                status="streaming",
                streaming_started_at=sa.func.coalesce(_runs.c.streaming_started_at, sa.func.now()),
                lease_expires_at=sa.func.now() + lease,
            )
            .returning(*_runs.c)
        )
        async with self.transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_run_record(row) for row in rows), key=lambda r: r.created_at)

    async def delete_expired_events(self, retention_s: float) -> int:
        """Delete the raw events of runs finished more than `retention_s` ago; returns rows."""
        cutoff = sa.func.now() - sa.func.make_interval(
            0, 0, 0, 0, 0, 0, sa.cast(float(retention_s), sa.Float)
        )
        stmt = sa.delete(_events).where(
            _events.c.run_id == _runs.c.id,
            _runs.c.finished_at.is_not(None),
            _runs.c.finished_at <= cutoff,
        )
        async with self.transaction() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount)

    async def server_identity(self) -> str:
        """The broker's own PostgreSQL server's system identifier (integration policy)."""
        stmt = sa.text("SELECT system_identifier::text FROM pg_control_system()")
        async with self.transaction() as conn:
            return str((await conn.execute(stmt)).scalar_one())

    # --- read side --------------------------------------------------------------------

    async def get_run_state(self, workspace_id: WorkspaceId, run_id: RunId) -> RunState:
        """A run of the workspace with its head, or `NotFound` (also for another workspace's)."""
        max_seq = (
            sa.select(sa.func.max(_events.c.seq))
            .where(_events.c.run_id == _runs.c.id)
            .scalar_subquery()
        )
        stmt = sa.select(_runs, max_seq.label("max_seq")).where(
            _runs.c.id == run_id, _runs.c.workspace_id == workspace_id
        )
        async with self.autocommit() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        record = _run_record(row)
        return RunState(record, max(record.last_seq, row.max_seq or 0), row.aborted_by)

    async def listen(
        self, on_payload: Hook, on_lost: Callable[[], None], *, on_cancel: Hook | None = None
    ) -> Listening:
        """Open a connection that LISTENs for wake-ups; `on_lost` fires when it drops."""
        return await listen(self.engine, on_payload, on_lost, on_cancel=on_cancel)
