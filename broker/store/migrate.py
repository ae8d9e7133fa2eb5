"""Schema migrations: Alembic driven from code, with the URL from Settings."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import migrations

__all__ = ["alembic_config", "head_revision", "is_at_head", "upgrade", "upgrade_connection"]

_SCRIPTS = Path(migrations.__file__).parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and `url`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` (blocking: call from a thread inside a loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_connection(connection: AsyncConnection, revision: str = "head") -> None:
    """Upgrade through an open async connection (the caller commits)."""

    def _upgrade(sync_connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    await connection.run_sync(_upgrade)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def is_at_head(connection: AsyncConnection) -> bool:
    """Whether the database's schema is at the newest revision."""

    def _current(sync_connection: Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    return await connection.run_sync(_current) == head_revision()
