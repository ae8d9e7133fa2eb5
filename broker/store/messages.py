"""SQL of a thread's transcript (`messages`): appended in order, content sealed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.store.connection import Connected
from broker.store.records import StoredMessage
from broker.store.sealing import open_message, seal_message
from broker.store.statements import messages as _messages
from models.events import ChatMessage
from models.ids import RunId, ThreadId, new_id

__all__ = ["MessageQueries"]


class MessageQueries(Connected):
    """The transcript part of the PostgreSQL adapter."""

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
            sealed = seal_message(self.keyring, message_id, message.content)
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
                    content=open_message(self.keyring, row.id, row.key_id, row.content),
                ),
                created_at=row.created_at,
            )
            for row in rows
        ]
