"""Alembic environment (async): the URL comes from the broker, never alembic.ini.

`broker.store.migrate` passes either an open connection (`config.attributes
["connection"]`) or a URL (`sqlalchemy.url` set in code). Run by hand with
`alembic upgrade head`, it reads `DATABASE_URL` through the broker Settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from durable.tables import metadata as durable_metadata
from models.tables import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=[metadata, durable_metadata],
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from broker.web.settings import Settings

    settings = Settings()
    if settings.database_url is None:
        raise SystemExit("set DATABASE_URL, or run `broker migrate` for the embedded database")
    return settings.database_url


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async(_url()))


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=[metadata, durable_metadata], literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
