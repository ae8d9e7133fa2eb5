"""Fixtures shared by every test: the database, settings and the store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store.crypto import generate_key_spec
from broker.store.database import create_engine
from broker.store.postgres import Store
from broker.web.settings import Settings
from tests.database import TestDatabases, test_server_url
from tests.tenant_server import TenantServer, tenant_server


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """The admin URL of this session's PostgreSQL server."""
    with test_server_url(os.environ.get("TEST_DATABASE_URL")) as url:
        yield url


@pytest.fixture(scope="session")
async def databases(pg_admin_url: str) -> TestDatabases:
    dbs = TestDatabases(pg_admin_url)
    await dbs.create_template()
    return dbs


@pytest.fixture
async def database_url(databases: TestDatabases) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    url = await databases.clone()
    yield url
    await databases.drop(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a broker on this test's database, with fixed test secrets."""
    return Settings(
        DATABASE_URL=database_url,
        BROKER_DATA_DIR=tmp_path / "data",
        BROKER_SECRET=SecretStr("test-broker-secret-0123456789abcdef"),
        BROKER_ENCRYPTION_KEYS=SecretStr(generate_key_spec("test1")),
        BROKER_LOCAL_SECRET=SecretStr("test-local-secret-0123456789abcdef"),
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine, settings: Settings) -> Store:
    return Store(engine, settings.keyring())


@pytest.fixture(scope="session")
def tenant_pg() -> Iterator[TenantServer]:
    """A second PostgreSQL, on TCP 127.0.0.1, standing for a tenant's own database server."""
    with tenant_server() as server:
        yield server
