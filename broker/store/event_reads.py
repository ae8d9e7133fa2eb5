"""The PostgreSQL adapter's reads of stream events: pages bounded by rows and bytes.

One statement (`READ_EVENTS_MANY`) serves a single run's catch-up and the
hub's read of every dirty tail. Rows come back parsed (`read_events`) or
decrypted but unparsed (`read_raw_events`, `read_events_many`) for readers
that only pass them on; every page says whether the table holds more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from broker.store.connection import Connected
from broker.store.records import EventPage, RawPage
from broker.store.statements import READ_EVENTS_MANY
from models.ids import RunId

__all__ = ["EventReads"]

NO_BYTE_LIMIT = 2**62


class EventReads(Connected):
    """Reads of `raw_stream_events`, mixed into `broker.store.postgres.Store`."""

    async def read_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> EventPage:
        """The run's events with `seq > after`, in order: at most `limit`, and at most
        `max_bytes` of stored payload (one event at least); `more` if the table has more."""
        page = EventPage()
        for row in await self._read_pages({run_id: after}, limit, max_bytes):
            if row.keep:
                page.append(self.open_event(row.run_id, row.seq, row.key_id, row.payload))
            page.more = page.more or not row.keep
        return page

    async def read_raw_events(
        self, run_id: RunId, after: int, limit: int = 1000, max_bytes: int | None = None
    ) -> RawPage:
        """`read_events`, decrypted but not parsed."""
        pages = await self.read_events_many({run_id: after}, limit, max_bytes)
        return pages.get(run_id, RawPage())

    async def read_events_many(
        self, heads: Mapping[RunId, int], limit_per_run: int, max_bytes_per_run: int | None = None
    ) -> dict[RunId, RawPage]:
        """Each run's events with `seq >` its head, in order, bounded and raw as
        `read_raw_events`; runs without one are left out."""
        found: dict[RunId, RawPage] = {}
        for row in await self._read_pages(heads, limit_per_run, max_bytes_per_run):
            page = found.setdefault(RunId(row.run_id), RawPage())
            if row.keep:
                page.append(self.open_raw(row.run_id, row.seq, row.key_id, row.payload))
            page.more = page.more or not row.keep
        return found

    async def _read_pages(
        self, heads: Mapping[RunId, int], limit: int, max_bytes: int | None
    ) -> Sequence[sa.Row[Any]]:
        """`READ_EVENTS_MANY`'s rows: kept ones, and one marker past each cut page."""
        if not heads:
            return []
        params = {
            "run_ids": list(heads),
            "afters": list(heads.values()),
            "limit": limit,
            "max_bytes": NO_BYTE_LIMIT if max_bytes is None else max_bytes,
        }
        async with self.autocommit() as conn:
            return (await conn.execute(READ_EVENTS_MANY, params)).all()
