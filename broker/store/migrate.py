"""Schema migrations: Alembic driven from code, with the URL from Settings.

Some revisions seal existing plaintext (0002: thread titles): they read the
keyring from `config.attributes["keyring"]`, given here as `keyring`, and
refuse to run on such rows without one.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import migrations
from broker.store.crypto import Keyring

__all__ = ["alembic_config", "head_revision", "is_at_head", "upgrade", "upgrade_connection"]

_SCRIPTS = Path(migrations.__file__).parent


def alembic_config(url: str | None = None, *, keyring: Keyring | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and `url`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if keyring is not None:
        config.attributes["keyring"] = keyring
    return config


def upgrade(url: str, revision: str = "head", *, keyring: Keyring | None = None) -> None:
    """Upgrade the database at `url` (blocking: call from a thread inside a loop)."""
    command.upgrade(alembic_config(url, keyring=keyring), revision)


async def upgrade_connection(
    connection: AsyncConnection, revision: str = "head", *, keyring: Keyring | None = None
) -> None:
    """Upgrade through an open async connection (the caller commits)."""

    def _upgrade(sync_connection: Connection) -> None:
        config = alembic_config(keyring=keyring)
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
