"""Migrations on a real database: up, down, up again, and no drift from the models."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from broker.migrate import alembic_config, head_revision, is_at_head, upgrade
from durable.tables import metadata as durable_metadata
from models.tables import metadata
from tests.database import TestDatabases


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade_round_trips(databases: TestDatabases) -> None:
    url = await databases.create_empty()
    try:
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == set(metadata.tables) | set(durable_metadata.tables)
        await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
        assert await _tables(url) == set()
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == set(metadata.tables) | set(durable_metadata.tables)
    finally:
        await databases.drop(url)


async def test_autogenerate_finds_nothing_to_change(database_url: str) -> None:
    def _diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, [metadata, durable_metadata]))

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert await is_at_head(conn)
    finally:
        await engine.dispose()


async def test_fresh_database_is_not_at_head(databases: TestDatabases) -> None:
    url = await databases.create_empty()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert not await is_at_head(conn)
        assert head_revision() == "0004"
    finally:
        await engine.dispose()
        await databases.drop(url)
