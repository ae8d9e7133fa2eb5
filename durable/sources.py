"""A user stream as a `reader.Source`: its row, its messages, its wake-ups."""

from __future__ import annotations

import asyncio
import contextlib

from durable.reader import Head
from durable.store import DurableStore, StreamRecord
from durable.wakeups import Wakeups

__all__ = ["StreamSource"]


class StreamSource:
    """One request's view of a user stream; a deleted stream reads as closed."""

    def __init__(self, store: DurableStore, wakeups: Wakeups, record: StreamRecord) -> None:
        self._store = store
        self._wakeups = wakeups
        self._id = record.id
        self.path = record.path
        self.content_type = record.content_type
        self._head = Head(record.last_seq, record.closed)

    async def head(self) -> Head:
        """The head as of the last read or wait (both refresh it)."""
        return self._head

    def _seen(self, record: StreamRecord | None) -> None:
        if record is None:  # deleted: nothing will follow
            self._head = Head(self._head.last_seq, True)
        else:
            self._head = Head(record.last_seq, record.closed)

    async def read(self, after: int) -> list[bytes]:
        record, messages = await self._store.read(self._id, after)
        self._seen(record)
        return messages

    async def wait(self, after: int, limit_s: float) -> None:
        with self._wakeups.registered(self._id) as woken:
            self._seen(await self._store.by_id(self._id))
            if self._head.last_seq > after or self._head.closed:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit_s):
                    await woken.wait()

    async def aclose(self) -> None:
        """Nothing to release: wake-ups are registered only while waiting."""
