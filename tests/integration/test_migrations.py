"""Migrations on a real database: up, down, up again, and no drift from the models."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from broker.store.crypto import Keyring, generate_key_spec
from broker.store.migrate import alembic_config, head_revision, is_at_head, upgrade
from broker.store.postgres import Store
from durable.tables import metadata as durable_metadata
from models.ids import ThreadId, WorkspaceId
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


async def test_0002_seals_existing_titles_in_place_and_0001_gets_them_back(
    databases: TestDatabases,
) -> None:
    keyring = Keyring.from_spec(generate_key_spec("mig"))
    url = await databases.create_empty()
    engine = create_async_engine(url)
    title = "Plan Q3 layoffs — confidential"
    try:
        await asyncio.to_thread(upgrade, url, "0001")
        workspace, thread = uuid.uuid4(), uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO workspaces (id, name) VALUES (:id, 'w')"), {"id": workspace}
            )
            await conn.execute(
                sa.text("INSERT INTO threads (id, workspace_id, title) VALUES (:id, :ws, :t)"),
                {"id": thread, "ws": workspace, "t": title},
            )
        with pytest.raises(RuntimeError, match="encryption keys"):
            await asyncio.to_thread(upgrade, url)  # titles to seal, and no keys given

        await asyncio.to_thread(upgrade, url, keyring=keyring)
        await engine.dispose()  # its pooled connections cached plans of the old schema
        async with engine.connect() as conn:
            raw = (await conn.execute(sa.text("SELECT title FROM threads"))).scalar_one()
        assert title.encode() not in bytes(raw)
        opened = await Store(engine, keyring).get_thread(WorkspaceId(workspace), ThreadId(thread))
        assert opened.title == title

        config = alembic_config(url)
        config.attributes["keyring"] = keyring
        await asyncio.to_thread(command.downgrade, config, "0001")
        await engine.dispose()
        async with engine.connect() as conn:
            back = (await conn.execute(sa.text("SELECT title FROM threads"))).scalar_one()
        assert back == title
    finally:
        await engine.dispose()
        await databases.drop(url)


async def test_a_new_title_is_sealed_at_rest(store: Store) -> None:
    workspace = await store.ensure_workspace("acme")
    created = await store.create_thread(workspace, "Secret merger with Initech")
    async with store.engine.connect() as conn:
        key_id, raw = (await conn.execute(sa.text("SELECT title_key_id, title FROM threads"))).one()
    assert key_id and b"Initech" not in bytes(raw)
    assert (await store.get_thread(workspace, created.thread_id)).title == created.title
    untitled = await store.create_thread(workspace, None)
    assert (await store.get_thread(workspace, untitled.thread_id)).title is None
