"""A PostgreSQL that cannot serve yet: every store answers `DatabaseUnavailable`.

While a server starts up (or shuts down, or has no connection slot left) it
refuses each new connection with a FATAL of its own (57P03, 53300). That is
the database being unavailable, which the contract answers 503
`database_unavailable`; before, SQLAlchemy's generic wrapper of it escaped
the stores and a request was answered a bare 500.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from broker.errors import DatabaseUnavailable
from broker.store.database import create_engine
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunFlush
from durable.store import DurableStore
from models.ids import RunId, ThreadId, WorkspaceId
from tests.integration.streams_helpers import text
from tests.pg_faults import refusing_server

REFUSALS = [
    ("57P03", "the database system is starting up"),
    ("57P03", "the database system is not yet accepting connections"),
    ("57P01", "terminating connection due to administrator command"),
    ("53300", "sorry, too many clients already"),
]


@pytest.fixture(params=REFUSALS, ids=lambda refusal: f"{refusal[0]} {refusal[1]}")
async def refusing(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[Store]:
    """A store whose database refuses every connection as `request.param` says."""
    code, message = request.param
    async with refusing_server(code, message) as port:
        engine = create_engine(f"postgresql+asyncpg://broker:secret@127.0.0.1:{port}/broker")
        try:
            yield Store(engine, store.keyring)
        finally:
            await engine.dispose()


async def test_every_path_of_the_broker_s_store_says_unavailable(refusing: Store) -> None:
    run_id, thread_id = RunId(uuid.uuid4()), ThreadId(uuid.uuid4())
    with pytest.raises(DatabaseUnavailable):  # a transaction
        await refusing.get_run(WorkspaceId(uuid.uuid4()), run_id)
    with pytest.raises(DatabaseUnavailable):  # an autocommit read
        await refusing.read_raw_events(run_id, after=0, limit=10)
    with pytest.raises(DatabaseUnavailable):  # the flush, straight through the driver
        await refusing.flush_runs(
            "writer",
            60.0,
            [RunFlush(run_id, thread_id, 2)],
            [PendingEvent(run_id, 2, text("never stored"), datetime.now(UTC))],
        )


async def test_the_durable_streams_store_says_unavailable(refusing: Store) -> None:
    durable = DurableStore(refusing.engine, refusing.keyring)
    with pytest.raises(DatabaseUnavailable):
        await durable.get(uuid.uuid4(), "/a/stream")
