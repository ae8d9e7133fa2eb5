"""One whole system for end-to-end tests: the real agent service and a broker on loopback.

The agent service runs the scripted model (no `ANTHROPIC_API_KEY`), the broker
has a demo integration of its own in the `acme` workspace, and both are real
uvicorn servers on free ports. The demo database is dropped on exit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from agents.app import create_app as create_agent_app
from agents.settings import AgentSettings
from broker.app import create_app
from broker.integrations.demo import ensure_demo_integration
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from models.ids import WorkspaceId
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import drop_demo
from tests.servers import free_port, serve

__all__ = ["WholeSystem", "whole_system"]


@dataclass(frozen=True)
class WholeSystem:
    base: str
    workspace_id: WorkspaceId
    api: httpx.AsyncClient
    """Authenticated as the workspace's owner, on `base`."""
    database: str
    """The demo database's name."""


@contextlib.asynccontextmanager
async def whole_system(
    settings: Settings,
    store: Store,
    databases: TestDatabases,
    *,
    name: str,
    delay_ms: float,
    timeout_s: float = 30,
) -> AsyncIterator[WholeSystem]:
    """The system, its demo named after `name`, the model `delay_ms` apart per token."""
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_{name}_{suffix}", f"demo_{name}_reader_{suffix}"
    workspace_id = await store.ensure_workspace("acme")
    await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    broker_port, agent_port = free_port(), free_port()
    base, agent_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{agent_port}"
    agent_settings = AgentSettings(
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        BROKER_URL=base,
        ANTHROPIC_API_KEY=None,
        AGENT_SCRIPTED_DELAY_MS=delay_ms,
    )
    broker_settings = settings.model_copy(update={"agent_url": agent_url, "broker_url": base})
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    try:
        async with (
            serve(create_agent_app(agent_settings), port=agent_port),
            serve(create_app(broker_settings), port=broker_port),
            httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
            ) as api,
        ):
            yield WholeSystem(base, workspace_id, api, database)
    finally:
        await drop_demo(databases.admin_url, database, role)
