"""Registering integrations: sealed credentials, workspace scoping, and nothing echoed back."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
import pytest
import sqlalchemy as sa
import structlog
from structlog.testing import capture_logs

from broker.app import create_app
from broker.errors import Conflict, DecryptionError, NotFound
from broker.store.crypto import Keyring, generate_key_spec
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from models.ids import IntegrationId, WorkspaceId, new_id
from tests.servers import serve
from tests.tenant_server import TenantServer

PASSWORD = "s3cret-Pa55word-nobody-may-see"
DSN = f"postgresql://analyst:{PASSWORD}@db.internal:5432/warehouse"


def _headers(settings: Settings, workspace_id: WorkspaceId) -> dict[str, str]:
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Registration connects, and the tenant test server is on loopback: list it.
    settings = settings.model_copy(update={"integration_allow": "127.0.0.1"})
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


@pytest.fixture(scope="module")
async def tenant_dsn(tenant_pg: TenantServer) -> AsyncIterator[str]:
    """A reachable, least-privilege login on the tenant server, whose password is PASSWORD."""
    role = f"api_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(tenant_pg.admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'")
        yield tenant_pg.dsn(role, PASSWORD)
        await admin.execute(f'DROP ROLE "{role}"')
    finally:
        await admin.close()


async def _count_integrations(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM integrations"))).scalar_one())


# --- the store ------------------------------------------------------------------------


async def test_credentials_are_sealed_at_rest_and_open_for_the_callback(store: Store) -> None:
    workspace_id = await store.ensure_workspace("acme")
    record = await store.create_integration(workspace_id, "postgres", "warehouse", {"dsn": DSN})

    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT key_id, credentials FROM integrations"))).one()
    assert row.key_id == store.keyring.primary_id
    assert PASSWORD.encode() not in row.credentials
    assert b"db.internal" not in row.credentials

    opened, credentials = await store.integration_credentials(record.integration_id)
    assert opened == record
    assert credentials == {"dsn": DSN}
    listed = await store.list_integrations(workspace_id)
    assert [(r.integration_id, r.kind, r.name) for r in listed] == [
        (record.integration_id, "postgres", "warehouse")
    ]
    assert not hasattr(listed[0], "credentials")


async def test_sealed_credentials_moved_to_another_integration_do_not_open(store: Store) -> None:
    workspace_id = await store.ensure_workspace("acme")
    first = await store.create_integration(workspace_id, "postgres", "one", {"dsn": DSN})
    second = await store.create_integration(workspace_id, "postgres", "two", {"dsn": "x"})
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE integrations SET credentials = "
                "(SELECT credentials FROM integrations WHERE id = :src) WHERE id = :dst"
            ),
            {"src": first.integration_id, "dst": second.integration_id},
        )
    with pytest.raises(DecryptionError):
        await store.integration_credentials(second.integration_id)


async def test_a_duplicate_name_conflicts_only_within_a_workspace(store: Store) -> None:
    acme = await store.ensure_workspace("acme")
    other = await store.ensure_workspace("other")
    await store.create_integration(acme, "postgres", "warehouse", {"dsn": DSN})
    with pytest.raises(Conflict):
        await store.create_integration(acme, "postgres", "warehouse", {"dsn": DSN})
    await store.create_integration(other, "postgres", "warehouse", {"dsn": DSN})
    assert await _count_integrations(store) == 2


async def test_unknown_integration_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.integration_credentials(IntegrationId(new_id()))


async def test_another_keyring_cannot_open_the_credentials(store: Store) -> None:
    workspace_id = await store.ensure_workspace("acme")
    record = await store.create_integration(workspace_id, "postgres", "w", {"dsn": DSN})
    stranger = Store(store.engine, Keyring.from_spec(generate_key_spec(store.keyring.primary_id)))
    with pytest.raises(DecryptionError):
        await stranger.integration_credentials(record.integration_id)


# --- the routes -----------------------------------------------------------------------


async def test_create_then_list_answers_id_kind_name_and_never_the_credentials(
    client: httpx.AsyncClient, settings: Settings, store: Store, tenant_dsn: str
) -> None:
    workspace_id = await store.ensure_workspace("acme")
    headers = _headers(settings, workspace_id)
    body = {"kind": "postgres", "name": "warehouse", "credentials": {"dsn": tenant_dsn}}

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        created = await client.post("/api/integrations", json=body, headers=headers)
        listed = await client.get("/api/integrations", headers=headers)

    assert created.status_code == 201, created.text
    answer = created.json()
    assert set(answer) == {"id", "kind", "name"}
    assert (answer["kind"], answer["name"]) == ("postgres", "warehouse")
    assert listed.status_code == 200
    assert listed.json() == {"integrations": [answer]}
    for response in (created, listed):
        assert PASSWORD not in response.text
        assert "db.internal" not in response.text
    assert any(entry["event"] == "integration_created" for entry in logs)
    assert PASSWORD not in repr(logs)


async def test_duplicate_name_is_409_and_writes_nothing(
    client: httpx.AsyncClient, settings: Settings, store: Store, tenant_dsn: str
) -> None:
    headers = _headers(settings, await store.ensure_workspace("acme"))
    body = {"kind": "postgres", "name": "warehouse", "credentials": {"dsn": tenant_dsn}}
    assert (await client.post("/api/integrations", json=body, headers=headers)).status_code == 201
    again = await client.post("/api/integrations", json=body, headers=headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert PASSWORD not in again.text
    assert await _count_integrations(store) == 1


BAD_BODIES: list[tuple[str, Any]] = [
    ("unknown kind", {"kind": "mysql", "name": "w", "credentials": {"dsn": DSN}}),
    ("no kind", {"name": "w", "credentials": {"dsn": DSN}}),
    ("dsn not postgres", {"kind": "postgres", "name": "w", "credentials": {"dsn": f"x{DSN}"}}),
    ("dsn not a URL", {"kind": "postgres", "name": "w", "credentials": {"dsn": PASSWORD}}),
    ("dsn not a string", {"kind": "postgres", "name": "w", "credentials": {"dsn": [DSN]}}),
    ("extra credential", {"kind": "postgres", "name": "w", "credentials": {"dsn": DSN, "pw": 1}}),
    (
        "managed is the broker's alone",
        {"kind": "postgres", "name": "w", "credentials": {"dsn": DSN, "managed": True}},
    ),
    ("credentials a string", {"kind": "postgres", "name": "w", "credentials": DSN}),
    ("empty name", {"kind": "postgres", "name": " ", "credentials": {"dsn": DSN}}),
    ("name too long", {"kind": "postgres", "name": "n" * 201, "credentials": {"dsn": DSN}}),
    ("no credentials", {"kind": "postgres", "name": "w"}),
    ("not an object", [DSN]),
]


async def test_a_bad_body_is_422_without_echoing_credentials_and_writes_nothing(
    client: httpx.AsyncClient, settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    headers = _headers(settings, await store.ensure_workspace("acme"))
    caplog.set_level(logging.DEBUG)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        for case, body in BAD_BODIES:  # one test, not one per body: each costs a database clone
            answer = await client.post("/api/integrations", json=body, headers=headers)
            assert answer.status_code == 422, (case, answer.text)
            assert answer.json()["error"]["code"] == "validation_error", case
            assert PASSWORD not in answer.text, case
            assert "db.internal" not in answer.text, case
    assert PASSWORD not in repr(logs)
    assert PASSWORD not in caplog.text
    assert await _count_integrations(store) == 0


async def test_malformed_json_is_400_invalid_json_without_echoing_the_body(
    client: httpx.AsyncClient, settings: Settings, store: Store
) -> None:
    headers = {**_headers(settings, await store.ensure_workspace("acme"))}
    headers["content-type"] = "application/json"
    raw = json.dumps({"kind": "postgres", "name": "w", "credentials": {"dsn": DSN}})[:-1]
    answer = await client.post("/api/integrations", content=raw, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_json")
    assert PASSWORD not in answer.text
    assert await _count_integrations(store) == 0


async def test_no_or_bad_token_is_401(client: httpx.AsyncClient, store: Store) -> None:
    body = {"kind": "postgres", "name": "w", "credentials": {"dsn": DSN}}
    forged = {"Authorization": "Bearer abc.def"}
    for headers in ({}, forged):
        posted = await client.post("/api/integrations", json=body, headers=headers)
        listed = await client.get("/api/integrations", headers=headers)
        assert (posted.status_code, listed.status_code) == (401, 401)
        assert posted.json()["error"]["code"] == "unauthorized"
        assert PASSWORD not in posted.text
    assert await _count_integrations(store) == 0


async def test_a_workspace_lists_only_its_own_integrations(
    client: httpx.AsyncClient, settings: Settings, store: Store, tenant_dsn: str
) -> None:
    acme = _headers(settings, await store.ensure_workspace("acme"))
    other = _headers(settings, await store.ensure_workspace("other"))
    body = {"kind": "postgres", "name": "warehouse", "credentials": {"dsn": tenant_dsn}}
    created = (await client.post("/api/integrations", json=body, headers=acme)).json()
    theirs = {**body, "name": "theirs"}
    assert (await client.post("/api/integrations", json=theirs, headers=other)).status_code == 201

    assert (await client.get("/api/integrations", headers=acme)).json() == {
        "integrations": [created]
    }
    other_list = (await client.get("/api/integrations", headers=other)).json()["integrations"]
    assert [item["name"] for item in other_list] == ["theirs"]
    assert created["id"] not in json.dumps(other_list)
