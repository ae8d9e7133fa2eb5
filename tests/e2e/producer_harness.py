"""The write side end to end: a real broker and the fake agent on loopback, a real database.

`async with broker_and_agent(settings, store) as stack:` serves the fake agent
and `create_app(settings)` (pointed at it) under uvicorn, with a client that
carries a valid token. The agent's retry schedule is shortened so failure tests
take milliseconds, not seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from broker.app import create_app
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from broker.write.batching import Backoff
from broker.write.run_stream import Outcome
from models.events import StoredEvent
from models.ids import RunId, WorkspaceId
from tests.fakes.agent import FakeAgent
from tests.servers import serve

__all__ = [
    "Stack",
    "broker_and_agent",
    "row_counts",
    "serve_broker",
    "serve_fake_agent",
    "unbound_url",
]

FAST_RETRIES = Backoff(base=0.01, cap=0.05, attempts=5)


@dataclass
class Stack:
    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeAgent
    store: Store
    settings: Settings
    workspace_id: WorkspaceId
    token: str

    async def new_thread(self, title: str | None = "a thread") -> str:
        answer = await self.client.post("/api/threads", json={"title": title})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["thread_id"])

    async def start_run(self, thread_id: str, message: str, **headers: str) -> dict[str, Any]:
        answer = await self.client.post(
            f"/api/threads/{thread_id}/runs", json={"message": message}, headers=headers
        )
        assert answer.status_code == 202, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def finished(self, run_id: str) -> Outcome | None:
        """Wait until this broker wrote the run's end (None: it had already)."""
        stream = self.app.state.streams.get(RunId(uuid.UUID(run_id)))
        if stream is None:
            return None
        outcome: Outcome = await asyncio.wait_for(stream.wait_closed(), 10)
        return outcome

    async def events(self, run_id: str) -> list[StoredEvent]:
        return await self.store.read_events(RunId(uuid.UUID(run_id)), after=0, limit=100_000)

    async def run_row(self, run_id: str) -> Any:
        async with self.store.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.text(
                        "SELECT *, lease_expires_at > now() AS leased FROM runs WHERE id = :id"
                    ),
                    {"id": uuid.UUID(run_id)},
                )
            ).one()

    def metric(self, name: str) -> float:
        return self.app.state.metrics.registry.get_sample_value(name) or 0.0


async def row_counts(store: Store) -> dict[str, int]:
    """How many rows each table the write side touches holds."""
    counts = {}
    async with store.engine.connect() as conn:
        for table in ("threads", "runs", "messages", "raw_stream_events"):
            query = sa.text(f"SELECT count(*) FROM {table}")
            counts[table] = (await conn.execute(query)).scalar_one()
    return counts


def unbound_url() -> str:
    """A loopback URL nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def serve_fake_agent(settings: Settings) -> AsyncIterator[tuple[FakeAgent, str]]:
    """The fake agent, served; yields it and its base URL."""
    assert settings.local_secret is not None
    fake = FakeAgent(settings.local_secret.get_secret_value())
    async with serve(fake.app) as url:
        yield fake, url


@contextlib.asynccontextmanager
async def serve_broker(
    settings: Settings, store: Store, fake: FakeAgent, agent_url: str, **overrides: Any
) -> AsyncIterator[Stack]:
    """A real broker whose agent is at `agent_url`, with an authenticated client."""
    assert settings.secret is not None
    updated = settings.model_copy(
        update={"agent_url": agent_url, "flush_interval_ms": 10, **overrides}
    )
    app = create_app(updated)
    app.state.agent_backoff = FAST_RETRIES
    workspace_id = await store.ensure_workspace("acme")
    token = mint_token(settings.secret.get_secret_value(), workspace_id)
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}
        ) as client,
    ):
        yield Stack(app, client, fake, store, updated, workspace_id, token)


@contextlib.asynccontextmanager
async def broker_and_agent(
    settings: Settings, store: Store, *, agent_url: str | None = None, **overrides: Any
) -> AsyncIterator[Stack]:
    """The fake agent and a broker pointed at it (or at `agent_url`)."""
    async with (
        serve_fake_agent(settings) as (fake, fake_url),
        serve_broker(settings, store, fake, agent_url or fake_url, **overrides) as stack,
    ):
        yield stack
