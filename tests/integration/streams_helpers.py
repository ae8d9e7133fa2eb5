"""Shared pieces of the stream manager's integration tests (real PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from broker.store.postgres import Store
from broker.web.metrics import Metrics
from broker.write.batching import Backoff
from broker.write.run_stream import RunStream
from broker.write.streams import StreamManager
from models.events import StoredEvent, Text, TextData

__all__ = ["WRITER", "counter", "manager", "open_runs", "run_row", "stored", "text"]

WRITER = "writer-a"


def text(value: str) -> Text:
    return Text(data=TextData(text=value))


def counter(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


@contextlib.asynccontextmanager
async def manager(
    store: Store,
    *,
    interval_s: float = 0.01,
    lease_s: float = 10.0,
    run_buffer_max: int = 10_000,
    backoff: Backoff | None = None,
) -> AsyncIterator[StreamManager]:
    streams = StreamManager(
        store,
        writer_id=WRITER,
        lease_s=lease_s,
        flush_interval_s=interval_s,
        run_buffer_max=run_buffer_max,
        metrics=Metrics(),
        backoff=backoff or Backoff(base=0.01, cap=0.1),
    )
    streams.start()
    try:
        yield streams
    finally:
        await streams.close()


async def open_runs(
    store: Store, streams: StreamManager, count: int = 1, *, lease_s: float = 10.0
) -> list[RunStream]:
    """Create `count` runs (each on a thread of its own) leased to WRITER, and open them."""
    workspace_id = await store.ensure_workspace("acme")
    opened = []
    for _ in range(count):
        thread = await store.create_thread(workspace_id, None)
        run = await store.create_run(thread, writer_id=WRITER, lease_s=lease_s)
        opened.append(streams.open(run.run_id, run.thread_id))
    return opened


async def stored(store: Store, stream: RunStream) -> list[StoredEvent]:
    return await store.read_events(stream.run_id, after=0, limit=1_000_000)


async def run_row(store: Store, stream: RunStream) -> Any:
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.text("SELECT *, lease_expires_at > now() AS leased FROM runs WHERE id = :id"),
                {"id": stream.run_id},
            )
        ).one()
