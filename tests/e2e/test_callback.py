"""The agent's query callback end to end: the real agent service, the real broker, the demo.

Nothing is faked: the scripted model asks for data, the agent's tool calls the
broker with the local secret, the run's capability and its request id, the
broker opens the integration's sealed credentials and queries the demo
database as its read-only role, and the rows come back into the agent's
stream. The runs are real rows, streaming, so the capability has a run to name.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from agents.app import create_app as create_agent_app
from agents.callback import BrokerCallback
from agents.catalog import CATALOG_SQL
from agents.errors import CallbackRejected
from agents.settings import AgentSettings
from broker.app import create_app
from broker.integrations.demo import ensure_demo_integration
from broker.store.postgres import Store
from broker.store.records import IntegrationRecord
from broker.web.auth import mint_token
from broker.web.capability import mint_capability
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from models.events import Complete, StreamEvent, Text, ToolResult, ToolUse, parse_event
from models.ids import RunId, WorkspaceId
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import drop_demo
from tests.servers import serve


@dataclass
class Stack:
    broker_url: str
    agent_url: str
    local_secret: str
    demo: IntegrationRecord
    demo_password: str
    store: Store
    secret: str

    async def streaming_run(self, workspace_id: WorkspaceId | None = None) -> tuple[RunId, str]:
        """A run streaming in the demo's workspace (or another), and its capability."""
        workspace = workspace_id or self.demo.workspace_id
        thread = await self.store.create_thread(workspace, None)
        run = await self.store.create_run(thread, writer_id="test", lease_s=60)
        return run.run_id, mint_capability(self.secret, run.run_id, workspace, ttl_s=300)

    async def finish(self, run_id: RunId) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(
                text("UPDATE runs SET status = 'completed', finished_at = now() WHERE id = :id"),
                {"id": run_id},
            )


@pytest.fixture
async def stack(settings: Settings, store: Store, databases: TestDatabases) -> AsyncIterator[Stack]:
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_cb_{suffix}", f"demo_cb_reader_{suffix}"
    workspace_id = await store.ensure_workspace("acme")
    try:
        demo = await ensure_demo_integration(
            store, databases.admin_url, workspace_id, database=database, role=role
        )
        _, credentials = await store.integration_credentials(demo.integration_id)
        password = make_url(credentials["dsn"]).password
        assert password
        settings = settings.model_copy(update={"query_timeout_s": 0.5})
        local_secret = settings.require(settings.local_secret, "BROKER_LOCAL_SECRET")
        async with serve(create_app(settings)) as broker_url:
            agent_settings = AgentSettings(
                BROKER_LOCAL_SECRET=local_secret,
                BROKER_URL=broker_url,
                ANTHROPIC_API_KEY=None,
                AGENT_SCRIPTED_DELAY_MS=1,
            )
            async with serve(create_agent_app(agent_settings)) as agent_url:
                secret = settings.require(settings.secret, "BROKER_SECRET")
                yield Stack(broker_url, agent_url, local_secret, demo, password, store, secret)
    finally:
        await drop_demo(databases.admin_url, database, role)


async def _run(stack: Stack, message: str, request_id: str) -> list[StreamEvent]:
    run_id, capability = await stack.streaming_run()
    body = {
        "run_id": str(run_id),
        "capability": capability,
        "thread_id": "thread-1",
        "history": [],
        "new_user_message": message,
        "integrations": [
            {"id": str(stack.demo.integration_id), "kind": "postgres", "name": "demo"}
        ],
    }
    headers = {"x-local-secret": stack.local_secret, "X-Request-ID": request_id}
    async with (
        httpx.AsyncClient(base_url=stack.agent_url, timeout=30) as client,
        client.stream("POST", "/runs/stream", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        return [parse_event(sse.json()) async for sse in aiter_sse(response.aiter_bytes())]


async def test_the_agent_answers_from_the_demo_database_through_the_callback(
    stack: Stack,
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        events = await _run(stack, "How many rows are in the orders table?", "req-e2e-callback")

    # The agent reads the catalog first, then counts: two calls through the callback.
    uses = [e for e in events if isinstance(e, ToolUse)]
    assert [u.data.input["sql"] for u in uses] == [
        CATALOG_SQL,
        "SELECT count(*) AS orders\nFROM orders t0",
    ]
    assert {u.data.input["integration_id"] for u in uses} == {str(stack.demo.integration_id)}
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.data.is_error for r in results] == [False, False], results
    assert results[-1].data.output == {"columns": ["orders"], "rows": [[400]], "truncated": False}
    assert "**400**" in "".join(e.data.text for e in events if isinstance(e, Text))
    assert isinstance(events[-1], Complete)

    queries = [e for e in logs if e["event"] == "integration_query"]
    assert len(queries) == 2
    for query in queries:
        assert query["request_id"] == "req-e2e-callback"  # the agent carried the run's id back
        assert query["integration_id"] == str(stack.demo.integration_id)
    assert queries[-1]["rows"] == 1
    everything = repr(logs) + "".join(e.model_dump_json() for e in events)
    assert stack.demo_password not in everything


async def test_the_agent_s_client_gets_the_contract_s_errors(stack: Stack) -> None:
    demo = str(stack.demo.integration_id)
    _, capability = await stack.streaming_run()
    async with httpx.AsyncClient() as http:

        def client(secret: str) -> BrokerCallback:
            return BrokerCallback(
                http,
                broker_url=stack.broker_url,
                secret=secret,
                request_id="req-e2e-errors",
                timeout_s=10,
                capability=capability,
            )

        agent = client(stack.local_secret)
        ok = await agent.query(demo, "SELECT name FROM products ORDER BY id LIMIT 2")
        assert ok.columns == ["name"] and len(ok.rows) == 2 and ok.truncated is False

        cases = [
            (agent, demo, "DELETE FROM orders", 400, "query_rejected"),
            (agent, demo, "SELECT 1; DROP TABLE orders", 400, "query_rejected"),
            (agent, demo, "SELECT pg_sleep(30)", 408, "query_timeout"),
            (agent, demo, "SELECT * FROM nowhere", 422, "query_failed"),
            (agent, str(uuid.uuid4()), "SELECT 1", 404, "not_found"),
            (client("not-the-secret"), demo, "SELECT 1", 401, "unauthorized"),
        ]
        for caller, integration_id, sql, status, code in cases:
            with pytest.raises(CallbackRejected) as caught:
                await caller.query(integration_id, sql)
            assert (caught.value.status, caught.value.code) == (status, code), sql
            assert stack.demo_password not in caught.value.message

        count = await agent.query(demo, "SELECT count(*) AS n FROM orders")
        assert count.rows == [[400]]  # the refused writes changed nothing


async def _ask(
    stack: Stack, integration_id: str, *, capability: str | None, secret: str | None = None
) -> httpx.Response:
    headers = {"x-local-secret": secret if secret is not None else stack.local_secret}
    if capability is not None:
        headers["x-run-capability"] = capability
    async with httpx.AsyncClient(base_url=stack.broker_url) as http:
        return await http.post(
            f"/api/agents/integrations/{integration_id}/query",
            json={"sql": "SELECT count(*) FROM orders"},
            headers=headers,
        )


async def test_the_callback_answers_only_with_a_capability_of_a_streaming_run(
    stack: Stack,
) -> None:
    demo = str(stack.demo.integration_id)
    run_id, capability = await stack.streaming_run()
    ok = await _ask(stack, demo, capability=capability)
    assert ok.status_code == 200 and ok.json()["rows"] == [[400]]

    body, _, signature = capability.partition(".")
    claims = {"run": str(run_id), "ws": str(uuid.uuid4()), "exp": 2**40}
    forged_claims = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    other_workspace = await stack.store.ensure_workspace("someone-else")
    _, foreign_capability = await stack.streaming_run(other_workspace)
    expired = mint_capability(stack.secret, run_id, stack.demo.workspace_id, ttl_s=-1)
    bearer = mint_token(stack.secret, stack.demo.workspace_id)
    refused = {
        "no capability": await _ask(stack, demo, capability=None),
        "empty capability": await _ask(stack, demo, capability=""),
        "tampered signature": await _ask(stack, demo, capability=f"{body}.{signature[::-1]}"),
        "tampered claims": await _ask(stack, demo, capability=f"{forged_claims}.{signature}"),
        "expired": await _ask(stack, demo, capability=expired),
        "a bearer token": await _ask(stack, demo, capability=bearer),
        "another broker's": await _ask(
            stack,
            demo,
            capability=mint_capability("another-secret", run_id, stack.demo.workspace_id, 300),
        ),
        "wrong local secret": await _ask(stack, demo, capability=capability, secret="nope"),
        "no local secret": await _ask(stack, demo, capability=capability, secret=""),
    }
    for case, response in refused.items():
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "unauthorized", case

    # A valid capability of another workspace's run: the demo is not its integration.
    foreign = await _ask(stack, demo, capability=foreign_capability)
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"

    await stack.finish(run_id)
    finished = await _ask(stack, demo, capability=capability)
    assert finished.status_code == 401
    assert "no longer streaming" in finished.json()["error"]["message"]


async def test_a_run_s_tools_reach_only_its_workspace_s_integrations(stack: Stack) -> None:
    other_workspace = await stack.store.ensure_workspace("tenant-b")
    theirs = await stack.store.create_integration(
        other_workspace, "postgres", "b-data", {"dsn": "postgresql://b@db.example/b"}
    )
    _, capability = await stack.streaming_run()
    response = await _ask(stack, str(theirs.integration_id), capability=capability)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
