"""Every SQL statement of the broker, behind one class.

Statements are SQLAlchemy Core, one method each with a one-line docstring;
nothing else in the project talks SQL. Values are encrypted on the way in
and decrypted on the way out, so callers only ever see typed, plaintext
events and rows. Driver errors are translated to `broker.errors` here.

Writes of stream events are one round trip for any number of runs
(`unnest` of parallel arrays), because the flush loop's cost must grow with
flushes, not with events.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, INTEGER, TEXT, UUID, insert
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.crypto import Keyring, event_aad
from broker.errors import Conflict, DatabaseUnavailable, NotFound, RunInProgress, Unstorable
from models.events import (
    ChatMessage,
    RunStarted,
    RunStartedData,
    StoredEvent,
    StreamEvent,
    parse_event,
)
from models.ids import IntegrationId, RunId, ThreadId, WorkspaceId, new_id
from models.tables import Integration, Message, RawStreamEvent, Run, Thread, Workspace

_log = structlog.get_logger(__name__)

__all__ = [
    "NOTIFY_CHANNEL",
    "IntegrationRecord",
    "Listening",
    "PendingEvent",
    "RunEnding",
    "RunFlush",
    "RunRecord",
    "RunState",
    "Store",
    "StoredMessage",
    "ThreadRecord",
    "decode_event",
    "encode_event",
    "integration_aad",
    "message_aad",
    "notify_payloads",
    "parse_notify_payload",
    "title_aad",
]

_runs = cast(sa.Table, Run.__table__)
_threads = cast(sa.Table, Thread.__table__)
_workspaces = cast(sa.Table, Workspace.__table__)
_events = cast(sa.Table, RawStreamEvent.__table__)
_messages = cast(sa.Table, Message.__table__)
_integrations = cast(sa.Table, Integration.__table__)


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
    status: str
    last_seq: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    error_type: str | None
    agent_cursor: str | None
    writer_id: str | None
    abort_requested_at: datetime | None


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


_INTEGRATION_COLUMNS: list[sa.ColumnElement[Any]] = [
    _integrations.c.id,
    _integrations.c.workspace_id,
    _integrations.c.kind,
    _integrations.c.name,
    _integrations.c.created_at,
]
"""What an integration is, without its credentials: the columns every reader selects."""


def integration_aad(integration_id: uuid.UUID) -> bytes:
    """The associated data of an integration's credentials: `integration:<id>`."""
    return f"integration:{integration_id}".encode()


def _integration_record(row: sa.Row[Any]) -> IntegrationRecord:
    return IntegrationRecord(
        integration_id=IntegrationId(row.id),
        workspace_id=WorkspaceId(row.workspace_id),
        kind=row.kind,
        name=row.name,
        created_at=row.created_at,
    )


def title_aad(thread_id: uuid.UUID) -> bytes:
    """The associated data of a thread's title: `thread-title:<id>`."""
    return f"thread-title:{thread_id}".encode()


def message_aad(message_id: uuid.UUID) -> bytes:
    """The associated data of a transcript message: `message:<id>`."""
    return f"message:{message_id}".encode()


def encode_event(event: StreamEvent, ts: datetime) -> bytes:
    """The plaintext of a stored event: its JSON with the broker's receive time."""
    body = event.model_dump(mode="json")
    body["ts"] = ts.isoformat()
    return json.dumps(body, separators=(",", ":")).encode()


def decode_event(seq: int, plaintext: bytes) -> StoredEvent:
    """The inverse of `encode_event`, addressed by `seq`."""
    body = json.loads(plaintext)
    ts = datetime.fromisoformat(body.pop("ts"))
    return StoredEvent(seq=seq, ts=ts, event=parse_event(body))


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
        agent_cursor=row.agent_cursor,
        writer_id=row.writer_id,
        abort_requested_at=row.abort_requested_at,
    )


_INSERT_EVENTS = sa.text(
    "INSERT INTO raw_stream_events (run_id, seq, key_id, payload) "
    "SELECT * FROM unnest(:run_ids, :seqs, :key_ids, :payloads) "
    "ON CONFLICT (run_id, seq) DO NOTHING"
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("key_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(BYTEA)),
)


NOTIFY_CHANNEL = "raw_stream_events"
"""The LISTEN/NOTIFY channel of flushed events; the payload is `run_id:last_seq`."""

_NOTIFY = sa.text(
    "SELECT pg_notify(:channel, payload) FROM unnest(:payloads) AS payload"
).bindparams(sa.bindparam("payloads", type_=ARRAY(TEXT)), channel=NOTIFY_CHANNEL)


def notify_payloads(events: Sequence[PendingEvent]) -> list[str]:
    """One `run_id:last_seq` wake-up per run in a batch."""
    heads: dict[uuid.UUID, int] = {}
    for item in events:
        heads[item.run_id] = max(item.seq, heads.get(item.run_id, 0))
    return [f"{run_id}:{seq}" for run_id, seq in heads.items()]


def parse_notify_payload(payload: str) -> tuple[RunId, int] | None:
    """`run_id:last_seq` back to its parts; None for anything malformed."""
    run_id, _, seq = payload.partition(":")
    try:
        return RunId(uuid.UUID(run_id)), int(seq)
    except ValueError:
        return None


# --- write side: the fenced flush, lease hand-over and retention ---------------------


@dataclass(frozen=True, slots=True)
class RunEnding:
    """How a run ended, from its terminal event: written with the flush that stores it."""

    status: str
    error: str | None = None
    error_type: str | None = None
    aborted_by: str | None = None
    messages: tuple[ChatMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class RunFlush:
    """One run's part of a flush: its new head (0: lease renewal only), cursor and ending."""

    run_id: RunId
    thread_id: ThreadId
    last_seq: int
    cursor: str | None = None
    ending: RunEnding | None = None


# One round trip for any number of runs: fence and renew the leases (the runs this
# writer still owns come back), insert only those runs' events, finish the runs
# whose terminal event is in the batch, and NOTIFY each run that got events. Every
# sub-statement sees the same snapshot; `fenced`'s RETURNING is how the insert
# learns which runs passed the fence.
_FLUSH = sa.text(
    """
WITH batch AS (
    SELECT * FROM unnest(
        :run_ids, :last_seqs, :cursors, :statuses, :errors, :error_types, :aborted_bys
    ) AS b(id, last_seq, cursor, status, error, error_type, aborted_by)
),
fenced AS (
    UPDATE runs SET
        last_seq = greatest(runs.last_seq, b.last_seq),
        agent_cursor = coalesce(b.cursor, runs.agent_cursor),
        status = coalesce(b.status, runs.status),
        finished_at = CASE WHEN b.status IS NULL THEN runs.finished_at ELSE now() END,
        error = coalesce(b.error, runs.error),
        error_type = coalesce(b.error_type, runs.error_type),
        aborted_by = coalesce(runs.aborted_by, b.aborted_by),
        writer_id = CASE WHEN b.status IS NULL THEN runs.writer_id END,
        lease_expires_at = CASE
            WHEN b.status IS NULL THEN now() + make_interval(secs => :lease_s)
        END
    FROM batch AS b
    WHERE runs.id = b.id AND runs.writer_id = :writer_id AND runs.status = 'streaming'
    RETURNING runs.id, runs.last_seq, b.last_seq > 0 AS wrote
),
inserted AS (
    INSERT INTO raw_stream_events (run_id, seq, key_id, payload)
    SELECT e.run_id, e.seq, e.key_id, e.payload
    FROM unnest(:event_run_ids, :seqs, :key_ids, :payloads) AS e(run_id, seq, key_id, payload)
    WHERE e.run_id IN (SELECT id FROM fenced)
    ON CONFLICT (run_id, seq) DO NOTHING
)
SELECT id, CASE WHEN wrote THEN pg_notify(:channel, id::text || ':' || last_seq) END AS notified
FROM fenced
"""
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("last_seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("cursors", type_=ARRAY(TEXT)),
    sa.bindparam("statuses", type_=ARRAY(TEXT)),
    sa.bindparam("errors", type_=ARRAY(TEXT)),
    sa.bindparam("error_types", type_=ARRAY(TEXT)),
    sa.bindparam("aborted_bys", type_=ARRAY(TEXT)),
    sa.bindparam("lease_s", type_=sa.Float),
    sa.bindparam("event_run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("key_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(BYTEA)),
    channel=NOTIFY_CHANNEL,
)


# --- read side: run state, batched tail reads, the LISTEN connection -----------------


@dataclass(frozen=True, slots=True)
class RunState:
    """A run as a viewer needs it: its record, its head and who cancelled it."""

    record: RunRecord
    head: int
    """The highest seq the run has: `runs.last_seq`, or the table's if that is ahead."""
    aborted_by: str | None


# One statement for any number of tailed runs: each run's next rows by the primary
# key, so a sweep of a thousand idle runs costs about one index probe each.
_READ_EVENTS_MANY = sa.text(
    "SELECT x.run_id, e.seq, e.key_id, e.payload "
    "FROM unnest(:run_ids, :afters) AS x(run_id, after) "
    "CROSS JOIN LATERAL ("
    "  SELECT seq, key_id, payload FROM raw_stream_events"
    "  WHERE run_id = x.run_id AND seq > x.after ORDER BY seq LIMIT :limit"
    ") AS e"
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("afters", type_=ARRAY(INTEGER)),
    sa.bindparam("limit", type_=INTEGER),
)

# Errors of a direct asyncpg connection, translated to `DatabaseUnavailable`.
_LISTEN_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_PING_TIMEOUT_S = 5.0


class Listening:
    """A dedicated asyncpg connection LISTENing on `NOTIFY_CHANNEL`, outside the pool.

    Outside the pool because it is held for the life of the process, and a pooled
    connection handed back with a listener attached would keep calling it.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (what `pg_terminate_backend` takes)."""
        pid: int = self._connection.get_server_pid()
        return pid

    def is_closed(self) -> bool:
        closed: bool = self._connection.is_closed()
        return closed

    async def ping(self) -> None:
        """One round trip, or `DatabaseUnavailable`: proves a quiet connection is alive."""
        try:
            await self._connection.execute("SELECT 1", timeout=_PING_TIMEOUT_S)
        except _LISTEN_ERRORS as exc:
            raise DatabaseUnavailable(f"LISTEN connection: {exc}") from exc

    async def close(self) -> None:
        """Close the connection (at once if the server already went away)."""
        try:
            await self._connection.close(timeout=2)
        except _LISTEN_ERRORS:
            self._connection.terminate()


class Store:
    """The broker's database: typed, decrypted, one method per statement."""

    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self.engine = engine
        self.keyring = keyring

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; driver errors come out as `broker.errors`."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            # Never the driver's text: it names constraints and quotes values.
            _log.info("write_conflict", error=str(exc.orig)[:300])
            raise Conflict("the request conflicts with what is stored") from exc
        except (OperationalError, InterfaceError, OSError) as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailable(str(exc)) from exc
            cause = getattr(exc.orig, "__cause__", None)
            if isinstance(exc, DataError) or isinstance(cause, asyncpg.exceptions.DataError):
                # Never the driver's text: it may quote the value.
                _log.info("unstorable_value", error=type(cause or exc.orig).__name__)
                raise Unstorable("a value cannot be stored (a NUL character in text?)") from exc
            raise

    # --- encryption of event rows -------------------------------------------------

    def seal_events(self, events: Sequence[PendingEvent]) -> dict[str, list[Any]]:
        """The parallel arrays of an `unnest` insert, payloads encrypted."""
        run_ids: list[uuid.UUID] = []
        seqs: list[int] = []
        key_ids: list[str] = []
        payloads: list[bytes] = []
        for item in events:
            sealed = self.keyring.encrypt(
                encode_event(item.event, item.ts), event_aad(item.run_id, item.seq)
            )
            run_ids.append(item.run_id)
            seqs.append(item.seq)
            key_ids.append(sealed.key_id)
            payloads.append(sealed.blob)
        return {"run_ids": run_ids, "seqs": seqs, "key_ids": key_ids, "payloads": payloads}

    def open_event(self, run_id: uuid.UUID, seq: int, key_id: str, payload: bytes) -> StoredEvent:
        """Decrypt and validate one stored row."""
        return decode_event(seq, self.keyring.decrypt(key_id, payload, event_aad(run_id, seq)))

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
                await conn.execute(_INSERT_EVENTS, arrays)
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
                await conn.execute(_INSERT_EVENTS, self.seal_events(events))
                await conn.execute(_NOTIFY, {"payloads": notify_payloads(events)})

    async def read_events(self, run_id: RunId, after: int, limit: int = 1000) -> list[StoredEvent]:
        """The run's events with `seq > after`, in order, at most `limit`."""
        stmt = (
            sa.select(_events.c.seq, _events.c.key_id, _events.c.payload)
            .where(_events.c.run_id == run_id, _events.c.seq > after)
            .order_by(_events.c.seq)
            .limit(limit)
        )
        async with self.transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return [self.open_event(run_id, r.seq, r.key_id, r.payload) for r in rows]

    # --- write side ---------------------------------------------------------------------

    async def flush_runs(
        self,
        writer_id: str,
        lease_s: float,
        runs: Sequence[RunFlush],
        events: Sequence[PendingEvent],
    ) -> set[RunId]:
        """Fenced flush: renew leases, store events, finish runs; returns the runs still ours.

        Events of runs that fail the fence (another writer, or no longer streaming)
        are not written; the caller stops their producers. Idempotent by key, so a
        batch whose commit was lost can be sent again.
        """
        if not runs:
            return set()
        sealed = self.seal_events(events)
        params: dict[str, Any] = {
            "run_ids": [r.run_id for r in runs],
            "last_seqs": [r.last_seq for r in runs],
            "cursors": [r.cursor for r in runs],
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
        async with self.transaction() as conn:
            accepted = {RunId(row.id) for row in await conn.execute(_FLUSH, params)}
            for run in runs:
                if run.ending and run.ending.messages and run.run_id in accepted:
                    await self.insert_messages(conn, run.thread_id, run.run_id, run.ending.messages)
        return accepted

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

    # --- messages (the persisted transcript) -----------------------------------------

    async def insert_messages(
        self,
        conn: AsyncConnection,
        thread_id: ThreadId,
        run_id: RunId | None,
        messages: Sequence[ChatMessage],
    ) -> list[StoredMessage]:
        """Append messages (encrypted) to a thread, inside the caller's transaction."""
        if not messages:
            return []
        start = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(_messages.c.position), 0)).where(
                    _messages.c.thread_id == thread_id
                )
            )
        ).scalar_one()
        rows: list[dict[str, Any]] = []
        stored: list[StoredMessage] = []
        now = datetime.now(UTC)
        for offset, message in enumerate(messages, start=1):
            message_id = new_id()
            sealed = self.keyring.encrypt(message.content.encode(), message_aad(message_id))
            rows.append(
                {
                    "id": message_id,
                    "thread_id": thread_id,
                    "run_id": run_id,
                    "position": start + offset,
                    "role": message.role,
                    "key_id": sealed.key_id,
                    "content": sealed.blob,
                }
            )
            stored.append(StoredMessage(message_id, run_id, start + offset, message, now))
        await conn.execute(_messages.insert(), rows)
        return stored

    async def list_messages(
        self, thread_id: ThreadId, *, run_id: RunId | None = None
    ) -> list[StoredMessage]:
        """A thread's transcript in order (only one run's messages, if given), decrypted."""
        stmt = sa.select(_messages).where(_messages.c.thread_id == thread_id).order_by("position")
        if run_id is not None:
            stmt = stmt.where(_messages.c.run_id == run_id)
        async with self.transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            StoredMessage(
                message_id=row.id,
                run_id=RunId(row.run_id) if row.run_id is not None else None,
                position=row.position,
                message=ChatMessage(
                    role=row.role,
                    content=self.keyring.decrypt(
                        row.key_id, row.content, message_aad(row.id)
                    ).decode(),
                ),
                created_at=row.created_at,
            )
            for row in rows
        ]

    # --- integrations -----------------------------------------------------------------

    async def list_integrations(self, workspace_id: WorkspaceId) -> list[IntegrationRecord]:
        """The workspace's integrations by name, never their credentials."""
        stmt = (
            sa.select(*_INTEGRATION_COLUMNS)
            .where(_integrations.c.workspace_id == workspace_id)
            .order_by(_integrations.c.name)
        )
        async with self.transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_integration_record(row) for row in rows]

    async def create_integration(
        self, workspace_id: WorkspaceId, kind: str, name: str, credentials: dict[str, Any]
    ) -> IntegrationRecord:
        """Insert an integration, its credentials sealed; `Conflict` if the name is taken."""
        integration_id = IntegrationId(new_id())
        sealed = self.keyring.encrypt(
            json.dumps(credentials, separators=(",", ":")).encode(),
            integration_aad(integration_id),
        )
        stmt = (
            insert(_integrations)
            .values(
                id=integration_id,
                workspace_id=workspace_id,
                kind=kind,
                name=name,
                key_id=sealed.key_id,
                credentials=sealed.blob,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
            .returning(*_INTEGRATION_COLUMNS)
        )
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            # DO NOTHING rather than catching the IntegrityError: a taken name is an
            # expected answer, and the driver's message would quote the whole key.
            raise Conflict(f"an integration named {name!r} already exists in this workspace")
        return _integration_record(row)

    async def integration_credentials(
        self, integration_id: IntegrationId, *, workspace_id: WorkspaceId | None = None
    ) -> tuple[IntegrationRecord, dict[str, Any]]:
        """An integration with its decrypted credentials (for the callback), or `NotFound`.

        With `workspace_id`, another workspace's integration is `NotFound` too.
        """
        sealed = [_integrations.c.key_id, _integrations.c.credentials]
        stmt = sa.select(*_INTEGRATION_COLUMNS, *sealed).where(_integrations.c.id == integration_id)
        if workspace_id is not None:
            stmt = stmt.where(_integrations.c.workspace_id == workspace_id)
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"integration {integration_id} not found")
        plaintext = self.keyring.decrypt(
            row.key_id, row.credentials, integration_aad(integration_id)
        )
        credentials: dict[str, Any] = json.loads(plaintext)
        return _integration_record(row), credentials

    async def replace_integration_credentials(
        self, integration_id: IntegrationId, credentials: dict[str, Any]
    ) -> None:
        """Seal new credentials for an existing integration (the demo's password rotation)."""
        sealed = self.keyring.encrypt(
            json.dumps(credentials, separators=(",", ":")).encode(),
            integration_aad(integration_id),
        )
        stmt = (
            sa.update(_integrations)
            .where(_integrations.c.id == integration_id)
            .values(key_id=sealed.key_id, credentials=sealed.blob)
        )
        async with self.transaction() as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise NotFound(f"integration {integration_id} not found")

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
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        record = _run_record(row)
        return RunState(record, max(record.last_seq, row.max_seq or 0), row.aborted_by)

    async def read_events_many(
        self, cursors: Mapping[RunId, int], limit_per_run: int
    ) -> dict[RunId, list[StoredEvent]]:
        """Each run's events with `seq >` its cursor, in order, at most `limit_per_run` each."""
        if not cursors:
            return {}
        params = {
            "run_ids": list(cursors),
            "afters": list(cursors.values()),
            "limit": limit_per_run,
        }
        async with self.transaction() as conn:
            rows = (await conn.execute(_READ_EVENTS_MANY, params)).all()
        found: dict[RunId, list[StoredEvent]] = {}
        for row in rows:
            event = self.open_event(row.run_id, row.seq, row.key_id, row.payload)
            found.setdefault(RunId(row.run_id), []).append(event)
        for events in found.values():
            events.sort(key=lambda event: event.seq)
        return found

    async def listen(
        self, on_payload: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listening:
        """Open a connection that LISTENs on `NOTIFY_CHANNEL`; `on_lost` fires when it drops."""
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        try:
            connection = await asyncpg.connect(*args, **kwargs)
        except _LISTEN_ERRORS as exc:
            raise DatabaseUnavailable(f"LISTEN connection: {exc}") from exc
        listening = Listening(connection)
        connection.add_termination_listener(lambda _connection: on_lost())
        try:
            await connection.add_listener(
                NOTIFY_CHANNEL, lambda _connection, _pid, _channel, payload: on_payload(payload)
            )
        except _LISTEN_ERRORS as exc:
            await listening.close()
            raise DatabaseUnavailable(f"LISTEN {NOTIFY_CHANNEL}: {exc}") from exc
        return listening
