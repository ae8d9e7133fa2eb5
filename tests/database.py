"""The test PostgreSQL: one server per session, one cloned database per test.

Where the server comes from, first match wins: `TEST_DATABASE_URL`; a
testcontainers PostgreSQL when a Docker daemon answers; the embedded
pgserver. The schema is migrated once into a template database and every
test gets `CREATE DATABASE ... TEMPLATE`, a real database of its own: a
rolled-back transaction would hide NOTIFY, which is delivered on commit.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from broker.store.database import embedded_url, secure_embedded
from broker.store.migrate import upgrade
from tests.pg_faults import GOODBYE

__all__ = ["TestDatabases", "hear_goodbye", "test_server_url"]

TEMPLATE = "broker_template"


def hear_goodbye(driver: Any) -> None:
    """Have an idle asyncpg connection read its server's goodbye, but not yet the socket's end.

    What the socket delivers first when a backend is terminated. In that window the
    connection's next statement fails with asyncpg's `InternalClientError` ("cannot
    switch to state 11; another operation (2) is in progress"), not a connection
    error: the protocol read the FATAL while idle and waits for a `ReadyForQuery` that
    never comes. Made on purpose here, it is the race a real termination loses now
    and then.
    """
    driver._protocol.data_received(GOODBYE)


def _docker_answers() -> bool:
    """Whether a Docker daemon answers a ping (quietly: no socket left open)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    import docker

    try:
        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def test_server_url(env_url: str | None) -> Iterator[str]:
    """The admin URL of a PostgreSQL server for this test session."""
    if env_url:
        url = make_url(env_url).set(drivername="postgresql+asyncpg")
        yield url.render_as_string(hide_password=False)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="broker-test-pg-") as root:
        server = pgserver.get_server(Path(root) / "pg", cleanup_mode="stop")
        try:
            # The real configuration: password authentication on every connection.
            yield embedded_url(server, secure_embedded(server, Path(root) / "pg.password"))
        finally:
            server.cleanup()


class TestDatabases:
    """Creates the migrated template once and clones it for each test."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    async def _admin(self, *statements: str) -> None:
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    async def create_template(self) -> None:
        """Drop any stale template, create it and migrate it to head."""
        await self._admin(
            f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)', f'CREATE DATABASE "{TEMPLATE}"'
        )
        import asyncio

        await asyncio.to_thread(upgrade, self.url_for(TEMPLATE))

    async def clone(self) -> str:
        """A fresh database cloned from the template; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.url_for(name)

    async def create_empty(self) -> str:
        """A fresh, unmigrated database (for migration tests)."""
        name = f"empty_{uuid.uuid4().hex[:16]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
