"""The demo database: created once, seeded deterministically, readable and nothing more."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
from sqlalchemy.engine import make_url

from broker.integrations.demo import demo_rows, ensure_demo_integration
from broker.integrations.querying import asyncpg_dsn
from broker.store.database import create_engine
from broker.store.postgres import Store
from tests.database import TestDatabases

TABLES = ("customers", "products", "orders", "order_items", "events")


def admin_dsn(admin_url: str, database: str) -> str:
    url = make_url(admin_url).set(database=database)
    return asyncpg_dsn(url.render_as_string(hide_password=False))


async def drop_demo(admin_url: str, database: str, role: str) -> None:
    """Drop a demo database and its role (roles are server-wide: tests must clean up)."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


async def table_counts(admin_url: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(admin_dsn(admin_url, database))
    try:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
    finally:
        await conn.close()


@pytest.fixture
async def demo(databases: TestDatabases) -> AsyncIterator[tuple[str, str]]:
    """Names of a demo database and role of this test's own, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_{suffix}", f"demo_reader_{suffix}"
    yield database, role
    await drop_demo(databases.admin_url, database, role)


async def test_the_demo_is_created_seeded_and_registered(
    store: Store, databases: TestDatabases, demo: tuple[str, str]
) -> None:
    database, role = demo
    workspace_id = await store.ensure_workspace("acme")
    record = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    assert (record.kind, record.name, record.workspace_id) == ("postgres", "demo", workspace_id)
    assert await store.list_integrations(workspace_id) == [record]

    expected = {table: len(rows) for table, rows in demo_rows().items()}
    assert await table_counts(databases.admin_url, database) == expected
    assert expected["customers"] >= 100 and expected["order_items"] > expected["orders"]

    _, credentials = await store.integration_credentials(record.integration_id)
    dsn = make_url(credentials["dsn"])
    assert (dsn.username, dsn.database) == (role, database)
    assert dsn.query == make_url(databases.admin_url).query  # the socket's host= is kept


async def test_a_second_call_returns_the_same_integration_and_seeds_nothing_more(
    store: Store, databases: TestDatabases, demo: tuple[str, str]
) -> None:
    database, role = demo
    workspace_id = await store.ensure_workspace("acme")
    first = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    counts = await table_counts(databases.admin_url, database)
    second = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    assert second == first
    assert await store.list_integrations(workspace_id) == [first]
    assert await table_counts(databases.admin_url, database) == counts

    # A broker database created afresh registers the same demo, still without reseeding.
    other_url = await databases.clone()
    engine = create_engine(other_url, pool_size=1)
    try:
        other = Store(engine, store.keyring)
        other_ws = await other.ensure_workspace("acme")
        third = await ensure_demo_integration(
            other, databases.admin_url, other_ws, database=database, role=role
        )
        _, credentials = await other.integration_credentials(third.integration_id)
        conn = await asyncpg.connect(credentials["dsn"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM orders") == counts["orders"]
        finally:
            await conn.close()
    finally:
        await engine.dispose()
        await databases.drop(other_url)
    assert await table_counts(databases.admin_url, database) == counts


async def test_the_reader_role_can_read_and_nothing_else(
    store: Store, databases: TestDatabases, demo: tuple[str, str]
) -> None:
    database, role = demo
    workspace_id = await store.ensure_workspace("acme")
    record = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    _, credentials = await store.integration_credentials(record.integration_id)
    conn = await asyncpg.connect(credentials["dsn"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM order_totals") > 0
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        # Even in a transaction explicitly opened read-write, the role may not write.
        for statement in (
            "INSERT INTO products VALUES (999, 'x', 'y', 1, true)",
            "UPDATE orders SET status = 'refunded'",
            "DELETE FROM order_items",
            "TRUNCATE events",
            "CREATE TABLE mine (a int)",
            "CREATE TEMP TABLE mine (a int)",
            "DROP TABLE orders",
        ):
            with pytest.raises(asyncpg.PostgresError) as caught:
                async with conn.transaction(readonly=False):
                    await conn.execute("SET TRANSACTION READ WRITE")
                    await conn.execute(statement)
            assert isinstance(caught.value, asyncpg.InsufficientPrivilegeError), statement
    finally:
        await conn.close()
    assert await table_counts(databases.admin_url, database) == {
        table: len(rows) for table, rows in demo_rows().items()
    }


async def test_the_seeded_data_is_the_generated_data(
    store: Store, databases: TestDatabases, demo: tuple[str, str]
) -> None:
    database, role = demo
    workspace_id = await store.ensure_workspace("acme")
    await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    rows = demo_rows()
    assert rows == demo_rows()  # the seed makes it reproducible
    expected_revenue = sum(
        (quantity * price for _, _, quantity, price in rows["order_items"]), decimal.Decimal(0)
    )
    conn = await asyncpg.connect(admin_dsn(databases.admin_url, database))
    try:
        assert await conn.fetchval("SELECT sum(total) FROM order_totals") == expected_revenue
        first = await conn.fetchrow("SELECT * FROM customers ORDER BY id LIMIT 1")
        assert tuple(first.values()) == rows["customers"][0]
    finally:
        await conn.close()


@pytest.mark.parametrize("bad", ["Demo", "demo; DROP", 'd"x', "", "x" * 64])
async def test_names_that_are_not_plain_identifiers_are_refused(
    store: Store, databases: TestDatabases, bad: str
) -> None:
    workspace_id = await store.ensure_workspace("acme")
    with pytest.raises(ValueError, match="identifier"):
        await ensure_demo_integration(store, databases.admin_url, workspace_id, database=bad)
    with pytest.raises(ValueError, match="identifier"):
        await ensure_demo_integration(store, databases.admin_url, workspace_id, role=bad)
    assert await store.list_integrations(workspace_id) == []
