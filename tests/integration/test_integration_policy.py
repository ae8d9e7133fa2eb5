"""The integration policy (design 4.7) against real servers: the broker's own and a tenant's.

The tenant server is a second, real PostgreSQL on TCP 127.0.0.1 (see
tests/tenant_server.py); loopback is refused by default, so the tests that
mean to reach it list it in BROKER_INTEGRATION_ALLOW, as an operator would.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from broker.app import create_app
from broker.integrations.querying import asyncpg_dsn
from broker.store.migrate import upgrade
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.capability import mint_capability
from broker.web.settings import Settings
from models.ids import WorkspaceId
from tests.pg_faults import cutting_proxy
from tests.servers import serve
from tests.tenant_server import TenantServer

PASSWORD = "Tenant-Pa55word-nobody-may-see"


@dataclass(frozen=True)
class Roles:
    """The tenant server's roles for one module run, each with `PASSWORD`."""

    database: str
    analyst: str  # SELECT on one table: the least privilege that works
    reader_of_files: str  # member of pg_read_server_files
    climber: str  # member of a role that may create roles
    grower: str  # starts plain; a test grants it more

    def dsn(self, tenant: TenantServer, role: str, host: str = "") -> str:
        return tenant.dsn(role, PASSWORD, self.database, host)


@pytest.fixture(scope="module")
async def roles(tenant_pg: TenantServer) -> AsyncIterator[Roles]:
    suffix = uuid.uuid4().hex[:8]
    names = Roles(*(f"{kind}_{suffix}" for kind in ("wh", "analyst", "files", "climber", "grower")))
    admins = f"admins_{suffix}"
    conn = await asyncpg.connect(tenant_pg.admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{names.database}"')
        for role in (names.analyst, names.reader_of_files, names.climber, names.grower):
            await conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'")
        await conn.execute(f'GRANT pg_read_server_files TO "{names.reader_of_files}"')
        await conn.execute(f'CREATE ROLE "{admins}" NOLOGIN CREATEROLE')
        await conn.execute(f'GRANT "{admins}" TO "{names.climber}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(tenant_pg.dsn("postgres", tenant_pg.password, names.database))
    try:
        await conn.execute("CREATE TABLE sales (id int, amount numeric)")
        await conn.execute("INSERT INTO sales VALUES (1, 9.5), (2, 20)")
        await conn.execute(f'GRANT SELECT ON sales TO "{names.analyst}", "{names.grower}"')
    finally:
        await conn.close()
    yield names
    conn = await asyncpg.connect(tenant_pg.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE "{names.database}" WITH (FORCE)')
        for role in (names.analyst, names.reader_of_files, names.climber, names.grower, admins):
            await conn.execute(f'DROP ROLE "{role}"')
    finally:
        await conn.close()


@dataclass
class Client:
    http: httpx.AsyncClient
    settings: Settings
    workspace_id: WorkspaceId
    capability: str

    async def register(self, dsn: str, name: str = "") -> httpx.Response:
        token = mint_token(self.settings.require(self.settings.secret, "s"), self.workspace_id)
        body = {"kind": "postgres", "name": name or uuid.uuid4().hex, "credentials": {"dsn": dsn}}
        return await self.http.post(
            "/api/integrations", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    async def query(self, integration_id: str, sql: str) -> httpx.Response:
        """What the agent sends: the local secret and a streaming run's capability."""
        secret = self.settings.require(self.settings.local_secret, "l")
        return await self.http.post(
            f"/api/agents/integrations/{integration_id}/query",
            json={"sql": sql},
            headers={"x-local-secret": secret, "x-run-capability": self.capability},
        )


@contextlib.asynccontextmanager
async def broker(settings: Settings, store: Store, **update: Any) -> AsyncIterator[Client]:
    settings = settings.model_copy(update={"query_timeout_s": 2.0, **update})
    workspace_id = await store.ensure_workspace("acme")
    run = await store.create_run(
        await store.create_thread(workspace_id, None), writer_id="test", lease_s=600
    )
    capability = mint_capability(
        settings.require(settings.secret, "s"), run.run_id, workspace_id, ttl_s=600
    )
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        yield Client(http, settings, workspace_id, capability)


def assert_refused(answer: httpx.Response, reason: str, *secrets: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "integration_refused", answer.text
    assert reason in error["message"], answer.text
    for secret in (PASSWORD, *secrets):
        assert secret not in answer.text


async def count_integrations(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM integrations"))).scalar_one())


def _socket_dsn(database_url: str, user: str, password: str) -> str:
    return asyncpg_dsn(
        make_url(database_url)
        .set(username=user, password=password)
        .render_as_string(hide_password=False)
    )


# --- the broker's own server ------------------------------------------------------------


async def test_the_broker_s_own_server_is_refused_by_socket_whatever_the_role(
    settings: Settings, store: Store, database_url: str
) -> None:
    url = make_url(database_url)
    socket_dir = str(url.query["host"])
    plain = f"plain_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f"CREATE ROLE \"{plain}\" LOGIN PASSWORD '{PASSWORD}'")
        dsns = [
            asyncpg_dsn(database_url),  # the superuser, with its real password
            _socket_dsn(database_url, plain, PASSWORD),  # a harmless role on the same server
        ]
        # Sockets are refused by default ...
        async with broker(settings, store) as client:
            for dsn in dsns:
                assert_refused(await client.register(dsn), "unix sockets", str(url.password))
        # ... and listing the socket does not make the broker's own server a tenant's.
        async with broker(settings, store, integration_allow=socket_dir) as client:
            for dsn in dsns:
                assert_refused(await client.register(dsn), "own database server", str(url.password))
    finally:
        await admin.execute(f'DROP ROLE "{plain}"')
        await admin.close()
    assert await count_integrations(store) == 0


async def test_the_broker_s_own_server_is_refused_by_tcp_address_and_alias(
    settings: Settings, tenant_pg: TenantServer, roles: Roles
) -> None:
    # A broker whose own database lives on the TCP server: that server is now "own".
    name = f"own_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(tenant_pg.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    own_url = tenant_pg.dsn("postgres", tenant_pg.password, name).replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    try:
        import asyncio

        await asyncio.to_thread(upgrade, own_url)
        own = settings.model_copy(update={"database_url": own_url})
        from broker.store.database import create_engine

        engine = create_engine(own_url, pool_size=1)
        try:
            store = Store(engine, own.keyring())
            async with broker(own, store, integration_allow="127.0.0.0/8") as client:
                for host in ("127.0.0.1", "localhost"):
                    for role in (roles.analyst, "postgres"):
                        password = tenant_pg.password if role == "postgres" else PASSWORD
                        dsn = tenant_pg.dsn(role, password, roles.database, host)
                        answer = await client.register(dsn)
                        assert_refused(answer, "own database server", tenant_pg.password)
            assert await count_integrations(store) == 0
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


# --- roles on a tenant's server ----------------------------------------------------------


async def test_powerful_roles_are_refused_and_a_least_privilege_role_works(
    settings: Settings, store: Store, tenant_pg: TenantServer, roles: Roles
) -> None:
    async with broker(settings, store, integration_allow="127.0.0.1") as client:
        superuser = tenant_pg.dsn("postgres", tenant_pg.password, roles.database)
        assert_refused(await client.register(superuser), "superuser", tenant_pg.password)
        files = roles.dsn(tenant_pg, roles.reader_of_files)
        assert_refused(await client.register(files), "pg_read_server_files")
        climber = roles.dsn(tenant_pg, roles.climber)
        assert_refused(await client.register(climber), "createrole")
        assert await count_integrations(store) == 0

        created = await client.register(roles.dsn(tenant_pg, roles.analyst))
        assert created.status_code == 201, created.text
        answer = await client.query(created.json()["id"], "SELECT id, amount FROM sales ORDER BY 1")
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [[1, 9.5], [2, 20]]


async def test_the_policy_is_checked_again_before_every_query(
    settings: Settings, store: Store, tenant_pg: TenantServer, roles: Roles
) -> None:
    async with broker(settings, store, integration_allow="127.0.0.1") as client:
        created = await client.register(roles.dsn(tenant_pg, roles.grower))
        assert created.status_code == 201, created.text
        integration_id = created.json()["id"]
        assert (await client.query(integration_id, "SELECT 1")).status_code == 200
        admin = await asyncpg.connect(tenant_pg.admin_dsn)
        try:
            await admin.execute(f'GRANT pg_read_server_files TO "{roles.grower}"')
            answer = await client.query(integration_id, "SELECT pg_read_file('PG_VERSION')")
            assert_refused(answer, "pg_read_server_files")
        finally:
            await admin.execute(f'REVOKE pg_read_server_files FROM "{roles.grower}"')
            await admin.close()
    # The same integration, on a broker that no longer allows loopback.
    async with broker(settings, store) as client:
        assert_refused(await client.query(integration_id, "SELECT 1"), "loopback")


# --- addresses ------------------------------------------------------------------------------


async def test_loopback_is_refused_by_default_and_allowed_when_listed(
    settings: Settings, store: Store, tenant_pg: TenantServer, roles: Roles
) -> None:
    async with broker(settings, store) as client:
        for host in ("127.0.0.1", "localhost", "[::1]", "0.0.0.0", "169.254.169.254", "127.1.2.3"):
            answer = await client.register(roles.dsn(tenant_pg, roles.analyst, host))
            assert_refused(answer, "not allowed")
            assert host.strip("[]") not in answer.json()["error"]["message"]
    assert await count_integrations(store) == 0
    for allow in ("127.0.0.1", "127.0.0.0/8", " 10.0.0.0/8 , 127.0.0.1/32"):
        async with broker(settings, store, integration_allow=allow) as client:
            answer = await client.register(roles.dsn(tenant_pg, roles.analyst))
            assert answer.status_code == 201, (allow, answer.text)


async def test_every_connection_failure_is_one_generic_answer(
    settings: Settings, store: Store, tenant_pg: TenantServer, roles: Roles
) -> None:
    import socket

    with socket.socket() as closed, socket.socket() as listening:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        listening.bind(("127.0.0.1", 0))
        listening.listen()  # open, but not PostgreSQL: it never answers
        dsns = {
            "closed": f"postgresql://a:{PASSWORD}@127.0.0.1:{closed.getsockname()[1]}/x",
            "open": f"postgresql://a:{PASSWORD}@127.0.0.1:{listening.getsockname()[1]}/x",
            "wrong password": tenant_pg.dsn(roles.analyst, "wrong", roles.database),
            "no such database": tenant_pg.dsn(roles.analyst, PASSWORD, "nowhere"),
            "no such host": f"postgresql://a:{PASSWORD}@no-such-host.invalid/x",
        }
        async with broker(
            settings,
            store,
            integration_allow="127.0.0.1, no-such-host.invalid",
            query_timeout_s=0.5,
        ) as client:
            registered = {case: await client.register(dsn) for case, dsn in dsns.items()}
            bodies = {case: answer.json() for case, answer in registered.items()}
            assert {answer.status_code for answer in registered.values()} == {502}
            assert len({repr(body) for body in bodies.values()}) == 1, bodies
            (body,) = {repr(body) for body in bodies.values()}
            assert "integration_unavailable" in body
            # The same at query time, for integrations whose server went away since.
            answers = []
            for case, dsn in dsns.items():
                record = await store.create_integration(
                    client.workspace_id, "postgres", case, {"dsn": dsn}
                )
                answers.append(await client.query(str(record.integration_id), "SELECT 1"))
            assert {answer.status_code for answer in answers} == {502}
            assert len({answer.text for answer in answers}) == 1
            assert PASSWORD not in answers[0].text


async def test_a_server_that_goes_away_mid_conversation_is_the_same_generic_answer(
    settings: Settings, store: Store, tenant_pg: TenantServer, roles: Roles
) -> None:
    # The server says goodbye (FATAL 57P01, then the socket closes) at the broker's own
    # check of who it is, or during the agent's query: a lost connection each time,
    # never a refusal, a failed query or a 500.
    async with broker(settings, store, integration_allow="127.0.0.1") as client:
        healthy = await client.register(roles.dsn(tenant_pg, roles.analyst), "healthy")
        assert healthy.status_code == 201, healthy.text
        expected = await client.query(healthy.json()["id"], "SELECT 1 FROM nowhere_at_all")
        assert expected.status_code == 422  # a query's own failure stays the query's
        unavailable = []
        for marker in (b"pg_control_system", b"cut_here"):
            async with cutting_proxy(tenant_pg.port, marker) as port:
                dsn = f"postgresql://{roles.analyst}:{PASSWORD}@127.0.0.1:{port}/{roles.database}"
                if marker == b"pg_control_system":
                    unavailable.append(await client.register(dsn))
                record = await store.create_integration(
                    client.workspace_id, "postgres", uuid.uuid4().hex, {"dsn": dsn}
                )
                sql = "SELECT amount /* cut_here */ FROM sales"
                unavailable.append(await client.query(str(record.integration_id), sql))
        # The query that ends its own connection: the server's goodbye, for real.
        record = await store.create_integration(
            client.workspace_id, "postgres", "self", {"dsn": roles.dsn(tenant_pg, roles.analyst)}
        )
        sql = "SELECT pg_terminate_backend(pg_backend_pid())"
        unavailable.append(await client.query(str(record.integration_id), sql))
        assert [answer.status_code for answer in unavailable] == [502] * 4, [
            answer.text for answer in unavailable
        ]
        assert {answer.json()["error"]["code"] for answer in unavailable} == {
            "integration_unavailable"
        }
        again = await client.query(healthy.json()["id"], "SELECT amount FROM sales")
        assert again.status_code == 200, again.text


# --- password authentication on the broker's own server ---------------------------------------


async def test_a_wrong_password_fails_on_the_embedded_server(database_url: str) -> None:
    url = make_url(database_url)
    assert url.password  # the harness runs the real configuration
    for password in ("wrong", "", str(url.password) + "x"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            conn = await asyncpg.connect(_socket_dsn(database_url, "postgres", password))
            await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
    await conn.close()
