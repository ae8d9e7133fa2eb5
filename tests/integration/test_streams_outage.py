"""PostgreSQL going away under the flush loop: every event stored exactly once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from broker.errors import DatabaseUnavailable, NotFound
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunFlush
from models.events import Complete, CompleteData
from models.ids import RunId
from tests.database import TestDatabases, hear_goodbye
from tests.e2e.test_subscribe_support import WRITER, new_run
from tests.integration.streams_helpers import counter, manager, open_runs, run_row, stored, text

_TERMINATE = sa.text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = :db AND pid <> pg_backend_pid()"
)


class _BusyStore(Store):
    """Connections that hold their backend a little, so a terminate lands mid-flush."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with super().transaction() as conn:
            await conn.execute(sa.text("SELECT pg_sleep(0.01)"))
            yield conn

    @contextlib.asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        async with super().driver() as conn:
            await conn.execute("SELECT pg_sleep(0.01)")
            yield conn


async def test_terminating_the_writers_connections_mid_run_loses_and_duplicates_nothing(
    store: Store, databases: TestDatabases, database_url: str
) -> None:
    store = _BusyStore(store.engine, store.keyring)
    admin = create_async_engine(databases.admin_url, isolation_level="AUTOCOMMIT")
    database = make_url(database_url).database
    terminated = 0
    try:
        async with manager(store, interval_s=0.01) as streams:
            runs = await open_runs(store, streams, 3)
            producing = True

            async def produce() -> None:
                i = 0
                while producing:
                    for run in runs:
                        assert run.push(text(f"{run.run_id}:{i}"), agent_event_id=str(i + 1))
                    i += 1
                    await asyncio.sleep(0.002)

            async def kill_connections() -> None:
                nonlocal terminated
                for _ in range(8):
                    await asyncio.sleep(0.1)
                    async with admin.connect() as conn:
                        terminated += (
                            await conn.execute(_TERMINATE, {"db": database})
                        ).scalar_one()

            producer = asyncio.create_task(produce())
            try:
                await kill_connections()
            finally:
                producing = False
                await producer
            for run in runs:
                run.push(Complete(data=CompleteData(new_messages=[])), agent_event_id="end")
            for run in runs:
                assert await run.wait_stored(run.next_seq - 1)
            retries = counter(streams._metrics, "broker_flush_retries_total")
    finally:
        await admin.dispose()

    assert terminated > 0
    assert retries > 0, "the outage never hit a flush: the test proves nothing"
    for run in runs:
        events = await stored(store, run)
        count = run.next_seq - 1
        assert [e.seq for e in events] == list(range(1, count + 1))
        texts = [e.event.data.text for e in events[1:-1]]  # type: ignore[union-attr]
        assert texts == [f"{run.run_id}:{i}" for i in range(count - 2)]
        assert events[-1].event.event_type == "complete"
        row = await run_row(store, run)
        assert (row.status, row.last_seq) == ("completed", count)


async def test_after_the_server_dropped_every_connection_the_next_flush_gets_a_fresh_one(
    store: Store, databases: TestDatabases, database_url: str
) -> None:
    run = await new_run(store)
    pooled = [await store.engine.connect() for _ in range(4)]  # a pool of live connections
    for conn in pooled:
        await conn.execute(sa.text("SELECT 1"))
    for conn in pooled:
        await conn.close()
    admin = create_async_engine(databases.admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(_TERMINATE, {"db": make_url(database_url).database})
    finally:
        await admin.dispose()
    flush = [RunFlush(run.run_id, run.thread_id, 2)]
    event = [PendingEvent(run.run_id, 2, text("after the restart"), datetime.now(UTC))]
    with pytest.raises(DatabaseUnavailable):
        await store.flush_runs(WRITER, 60.0, flush, event)  # the connection it met was dead
    # One failure, not one per dead pooled connection: the next try connects afresh.
    assert await store.flush_runs(WRITER, 60.0, flush, event) == {run.run_id: None}


async def _pool_heard_goodbye(store: Store, connections: int) -> None:
    """Pooled connections that have read their server's goodbye but not yet the socket's end."""
    pooled = [await store.engine.connect() for _ in range(connections)]
    drivers: list[Any] = []
    for conn in pooled:
        await conn.execute(sa.text("SELECT 1"))
        drivers.append((await conn.get_raw_connection()).driver_connection)
    for conn in pooled:
        await conn.close()
    for driver in drivers:
        hear_goodbye(driver)


async def test_a_flush_on_a_connection_that_heard_its_servers_goodbye_fails_once(
    store: Store,
) -> None:
    run = await new_run(store)
    await _pool_heard_goodbye(store, 4)
    flush = [RunFlush(run.run_id, run.thread_id, 2)]
    event = [PendingEvent(run.run_id, 2, text("after the goodbye"), datetime.now(UTC))]
    with pytest.raises(DatabaseUnavailable):
        await store.flush_runs(WRITER, 60.0, flush, event)
    assert await store.flush_runs(WRITER, 60.0, flush, event) == {run.run_id: None}
    assert [e.seq for e in await store.read_events(run.run_id, after=0, limit=10)] == [1, 2]


async def test_a_transaction_on_a_connection_that_heard_its_servers_goodbye_fails_once(
    store: Store,
) -> None:
    run = await new_run(store)
    await _pool_heard_goodbye(store, 4)
    with pytest.raises(DatabaseUnavailable):  # not the driver's own error, not a 500
        await store.get_run(run.workspace_id, run.run_id)
    assert (await store.get_run(run.workspace_id, run.run_id)).run_id == run.run_id
    with pytest.raises(NotFound):  # and the pool is sound again for every caller
        await store.get_run(run.workspace_id, RunId(uuid.UUID(int=0)))
