"""All SQL of the Durable Streams: streams, sealed messages, producers, wake-ups.

Every append runs in one transaction that first locks the stream's row
(`lock`), so the appends of a stream are sequential across processes and
its seqs stay contiguous: the row lock is the stream's writer fence.
Messages are sealed with the broker keyring, bound to `ds:<stream id>:<seq>`.
A commit that adds messages or closes a stream sends `NOTIFY ds_streams,
'<stream id>'`, a wake-up only: readers always re-read the table.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.errors import Conflict
from broker.store.connection import translated
from broker.store.crypto import Keyring
from durable.protocol import ProducerState
from durable.tables import ds_messages, ds_producers, ds_streams

__all__ = ["NOTIFY_CHANNEL", "DurableStore", "Locked", "StreamRecord", "message_aad"]

NOTIFY_CHANNEL = "ds_streams"
_READ_BYTES = 4 * 1024 * 1024


def message_aad(stream_id: int, seq: int) -> bytes:
    """The associated data of a stored message: `ds:<stream id>:<seq>`."""
    return f"ds:{stream_id}:{seq}".encode()


@dataclass(frozen=True, slots=True)
class StreamRecord:
    id: int
    workspace_id: uuid.UUID
    path: str
    content_type: str
    ttl_seconds: int | None
    expires_at: datetime | None
    expires_at_text: str | None
    accessed_at: datetime
    last_seq: int
    writer_seq: str | None
    closed: bool
    closed_by: str | None
    forked_from: int | None = None
    fork_seq: int = 0
    fork_sub: int = 0
    deleted: bool = False

    def expired(self, now: datetime) -> bool:
        """Past `Stream-Expires-At`, or idle for longer than `Stream-TTL`."""
        if self.expires_at is not None and now >= self.expires_at:
            return True
        if self.ttl_seconds is not None:
            return now >= self.accessed_at + timedelta(seconds=self.ttl_seconds)
        return False


def _record(row: sa.Row[Any]) -> StreamRecord:
    m = row._mapping
    return StreamRecord(
        id=m["id"],
        workspace_id=m["workspace_id"],
        path=m["path"],
        content_type=m["content_type"],
        ttl_seconds=m["ttl_seconds"],
        expires_at=m["expires_at"],
        expires_at_text=m["expires_at_text"],
        accessed_at=m["accessed_at"],
        last_seq=m["last_seq"],
        writer_seq=m["writer_seq"],
        closed=m["closed"],
        closed_by=m["closed_by"],
        forked_from=m["forked_from"],
        fork_seq=m["fork_seq"],
        fork_sub=m["fork_sub"],
        deleted=m["deleted"],
    )


def _where(workspace_id: uuid.UUID, path: str) -> sa.ColumnElement[bool]:
    return sa.and_(ds_streams.c.workspace_id == workspace_id, ds_streams.c.path == path)


class Locked:
    """One append's transaction, holding the stream's row lock."""

    def __init__(self, conn: AsyncConnection, keyring: Keyring, stream: StreamRecord) -> None:
        self._conn = conn
        self._keyring = keyring
        self.stream = stream

    async def producer(self, producer_id: str) -> ProducerState | None:
        """The producer's epoch and last seq on this stream, None if never seen."""
        row = (
            await self._conn.execute(
                sa.select(ds_producers.c.epoch, ds_producers.c.last_seq).where(
                    ds_producers.c.stream_id == self.stream.id,
                    ds_producers.c.producer_id == producer_id,
                )
            )
        ).first()
        return None if row is None else ProducerState(row.epoch, row.last_seq)

    async def save_producer(self, producer_id: str, state: ProducerState) -> None:
        """Upsert the producer's state."""
        stmt = sa.dialects.postgresql.insert(ds_producers).values(
            stream_id=self.stream.id,
            producer_id=producer_id,
            epoch=state.epoch,
            last_seq=state.last_seq,
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[ds_producers.c.stream_id, ds_producers.c.producer_id],
                set_={
                    "epoch": state.epoch,
                    "last_seq": state.last_seq,
                    "updated_at": sa.func.now(),
                },
            )
        )

    async def append(
        self,
        messages: Sequence[bytes],
        *,
        writer_seq: str | None = None,
        close: bool = False,
        closed_by: str | None = None,
    ) -> int:
        """Insert `messages` after `last_seq`, maybe close; return the new `last_seq`."""
        first = self.stream.last_seq + 1
        if messages:
            rows = []
            for seq, data in enumerate(messages, start=first):
                sealed = self._keyring.encrypt(data, message_aad(self.stream.id, seq))
                rows.append(
                    {
                        "stream_id": self.stream.id,
                        "seq": seq,
                        "key_id": sealed.key_id,
                        "payload": sealed.blob,
                    }
                )
            await self._conn.execute(sa.insert(ds_messages), rows)
        last = self.stream.last_seq + len(messages)
        values: dict[str, Any] = {"last_seq": last, "accessed_at": sa.func.now()}
        if writer_seq is not None:
            values["writer_seq"] = writer_seq
        if close:
            values["closed"] = True
            values["closed_by"] = closed_by
        # The wake-up rides on the UPDATE: one round trip fewer per append.
        await self._conn.execute(
            sa.update(ds_streams)
            .where(ds_streams.c.id == self.stream.id)
            .values(**values)
            .returning(sa.func.pg_notify(NOTIFY_CHANNEL, str(self.stream.id)))
        )
        return last


class DurableStore:
    """The Durable Streams tables: typed records, sealed messages."""

    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self.engine = engine
        self.keyring = keyring

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; driver errors come out as `broker.errors`, as the broker's store's."""
        with translated():
            async with self.engine.begin() as conn:
                yield conn

    async def get(self, workspace_id: uuid.UUID, path: str) -> StreamRecord | None:
        """The stream at `path` (maybe `deleted`); an expired one without forks reads as None."""
        async with self._transaction() as conn:
            row = (
                await conn.execute(sa.select(ds_streams).where(_where(workspace_id, path)))
            ).first()
            return None if row is None else await _unless_expired(conn, _record(row))

    async def by_id(self, stream_id: int) -> StreamRecord | None:
        """The stream with this id (a live reader re-reading its head)."""
        async with self._transaction() as conn:
            row = (
                await conn.execute(sa.select(ds_streams).where(ds_streams.c.id == stream_id))
            ).first()
            return None if row is None else _record(row)

    async def touch(self, stream_id: int) -> None:
        """Reset a TTL stream's idle clock."""
        async with self._transaction() as conn:
            await conn.execute(
                sa.update(ds_streams)
                .where(ds_streams.c.id == stream_id, ds_streams.c.ttl_seconds.is_not(None))
                .values(accessed_at=sa.func.now())
            )

    @contextlib.asynccontextmanager
    async def locked(self, workspace_id: uuid.UUID, path: str) -> AsyncIterator[Locked | None]:
        """A transaction holding the live stream's row lock; None if there is none."""
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    sa.select(ds_streams).where(_where(workspace_id, path)).with_for_update()
                )
            ).first()
            record = None if row is None else await _unless_expired(conn, _record(row))
            yield None if record is None else Locked(conn, self.keyring, record)

    @contextlib.asynccontextmanager
    async def creating(
        self,
        workspace_id: uuid.UUID,
        path: str,
        *,
        content_type: str,
        ttl_seconds: int | None,
        expires_at: datetime | None,
        expires_at_text: str | None,
        fork: tuple[int, int, int] | None = None,
    ) -> AsyncIterator[tuple[Locked, bool]]:
        """A transaction on the stream at `path`, inserted if missing (or expired).

        Yields the locked stream and whether this call created it.
        """
        async with self.locked(workspace_id, path) as existing:
            if existing is not None:
                yield existing, False
                return
        async with self._transaction() as conn:
            inserted = (
                await conn.execute(
                    sa.dialects.postgresql.insert(ds_streams)
                    .values(
                        workspace_id=workspace_id,
                        path=path,
                        content_type=content_type,
                        ttl_seconds=ttl_seconds,
                        expires_at=expires_at,
                        expires_at_text=expires_at_text,
                        forked_from=None if fork is None else fork[0],
                        fork_seq=0 if fork is None else fork[1],
                        fork_sub=0 if fork is None else fork[2],
                        last_seq=0 if fork is None else fork[1],
                    )
                    .on_conflict_do_nothing()
                    .returning(ds_streams)
                )
            ).first()
            if inserted is not None:
                yield Locked(conn, self.keyring, _record(inserted)), True
                return
        # Another request created it in between: compare against theirs.
        async with self.locked(workspace_id, path) as raced:
            if raced is None:
                raise Conflict("the stream was deleted while being created")
            yield raced, False

    async def delete(self, workspace_id: uuid.UUID, path: str) -> bool | None:
        """Delete the stream (kept as `deleted` while it has forks).

        True if deleted, False if there was none, None if it was deleted already.
        """
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    sa.select(ds_streams).where(_where(workspace_id, path)).with_for_update()
                )
            ).first()
            if row is None:
                return False
            record = await _unless_expired(conn, _record(row))
            if record is None:
                return False
            if record.deleted:
                return None
            await _remove(conn, record)
            await conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, str(record.id))))
            return True

    async def read(
        self, stream_id: int, after: int, *, max_bytes: int = _READ_BYTES
    ) -> tuple[StreamRecord | None, list[bytes]]:
        """The stream's row and its messages `after+1, ...` (about `max_bytes`, 1 at least).

        One transaction, so the row's `last_seq` and the messages agree. A deleted
        stream reads as (None, []).
        """
        async with self._transaction() as conn:
            row = (
                await conn.execute(sa.select(ds_streams).where(ds_streams.c.id == stream_id))
            ).first()
            if row is None:
                return None, []
            record = _record(row)
            if record.last_seq <= after:
                return record, []
            rows: list[Any] = []
            owner: StreamRecord | None = record
            upper: int | None = None  # seqs above it belong to a fork further down
            while owner is not None:
                # A stream owns the seqs above its fork_seq; the rest are its source's.
                low = max(after, owner.fork_seq)
                if upper is None or low < upper:
                    rows.extend(await _rows(conn, owner.id, low, upper))
                if owner.forked_from is None or after >= owner.fork_seq:
                    break
                upper = owner.fork_seq
                owner = await _by_id(conn, owner.forked_from)
            rows.sort(key=lambda item: item.seq)
        out: list[bytes] = []
        size = 0
        for expected, item in enumerate(rows, start=after + 1):
            if item.seq != expected or (out and size + len(item.payload) > max_bytes):
                break
            out.append(
                self.keyring.decrypt(
                    item.key_id, item.payload, message_aad(item.stream_id, item.seq)
                )
            )
            size += len(item.payload)
        return record, out


async def _by_id(conn: AsyncConnection, stream_id: int) -> StreamRecord | None:
    row = (await conn.execute(sa.select(ds_streams).where(ds_streams.c.id == stream_id))).first()
    return None if row is None else _record(row)


async def _rows(conn: AsyncConnection, stream_id: int, after: int, upto: int | None) -> list[Any]:
    """Sealed rows of one stream with `after < seq <= upto` (no upper bound if None)."""
    where = [ds_messages.c.stream_id == stream_id, ds_messages.c.seq > after]
    if upto is not None:
        where.append(ds_messages.c.seq <= upto)
    stmt = (
        sa.select(
            ds_messages.c.stream_id, ds_messages.c.seq, ds_messages.c.key_id, ds_messages.c.payload
        )
        .where(*where)
        .order_by(ds_messages.c.seq)
        .limit(1000)
    )
    return list((await conn.execute(stmt)).all())


async def _has_forks(conn: AsyncConnection, stream_id: int) -> bool:
    found = await conn.execute(
        sa.select(ds_streams.c.id).where(ds_streams.c.forked_from == stream_id).limit(1)
    )
    return found.first() is not None


async def _remove(conn: AsyncConnection, record: StreamRecord) -> None:
    """Delete a stream, or mark it `deleted` while forks read from it; then collect
    sources that were only kept for this one."""
    if await _has_forks(conn, record.id):
        await conn.execute(
            sa.update(ds_streams).where(ds_streams.c.id == record.id).values(deleted=True)
        )
        return
    await conn.execute(sa.delete(ds_streams).where(ds_streams.c.id == record.id))
    parent_id = record.forked_from
    while parent_id is not None:
        parent = await _by_id(conn, parent_id)
        if parent is None or not parent.deleted or await _has_forks(conn, parent.id):
            return
        await conn.execute(sa.delete(ds_streams).where(ds_streams.c.id == parent.id))
        parent_id = parent.forked_from


async def _unless_expired(conn: AsyncConnection, record: StreamRecord) -> StreamRecord | None:
    """The record, or None once expired (kept as `deleted` if it has forks)."""
    if record.deleted or not record.expired(datetime.now(UTC)):
        return record
    await _remove(conn, record)
    if await _has_forks(conn, record.id):
        return await _by_id(conn, record.id)
    return None
