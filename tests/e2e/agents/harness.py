"""Shared pieces of the agent service's end-to-end tests.

- `agent_settings`: settings with a known secret, the scripted model and short delays.
- `FakeBroker`: the broker's integration-query callback, served for real, recording calls.
- `FakeAnthropic`: the Messages API replaying recorded SSE streams (the one mocked edge).
- `events_of`: the typed events of an SSE response, with their ids and arrival times.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from agents.settings import AgentSettings
from broker.web.sse import aiter_sse
from models.events import StreamEvent, parse_event

SECRET = "agent-test-secret"
AUTH = {"x-local-secret": SECRET}
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "anthropic"
SHOP = {"id": "int_shop", "kind": "postgres", "name": "shop"}


def agent_settings(**overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "broker_local_secret": SECRET,
        "anthropic_api_key": None,
        "anthropic_base_url": None,
        "agent_scripted_delay_ms": 2,
        "agent_detach_grace_s": 5,
    }
    values.update(overrides)
    return AgentSettings(**values)


def run_body(message: str, *, run_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": run_id or f"run-{uuid.uuid4().hex[:8]}",
        "thread_id": "thread-1",
        "history": [],
        "new_user_message": message,
        "integrations": [],
    }
    body.update(extra)
    return body


@dataclass(frozen=True)
class Received:
    id: int
    event: StreamEvent
    at: float

    @property
    def type(self) -> str:
        return self.event.event_type


async def events_of(response: httpx.Response) -> AsyncIterator[Received]:
    """Parse an agent SSE response into typed events (keepalive comments are skipped)."""
    async for sse in aiter_sse(response.aiter_bytes()):
        assert sse.id is not None
        yield Received(id=int(sse.id), event=parse_event(sse.json()), at=time.monotonic())


async def collect(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Received]:
    async with client.stream("POST", "/runs/stream", json=body, headers=AUTH) as response:
        assert response.status_code == 200, await response.aread()
        return [received async for received in events_of(response)]


@dataclass
class BrokerCall:
    integration_id: str
    sql: str
    secret: str | None
    request_id: str | None


@dataclass
class FakeBroker:
    """`POST /api/agents/integrations/{id}/query`, answering with `answer` after `delay_s`."""

    answer: tuple[int, Any] = (200, {"columns": ["n"], "rows": [[42]], "truncated": False})
    delay_s: float = 0.0
    on_call: Callable[[BrokerCall], Awaitable[None]] | None = None
    calls: list[BrokerCall] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/agents/integrations/{integration_id}/query")
        async def query(integration_id: str, request: Request) -> JSONResponse:
            body = await request.json()
            call = BrokerCall(
                integration_id=integration_id,
                sql=body["sql"],
                secret=request.headers.get("x-local-secret"),
                request_id=request.headers.get("x-request-id"),
            )
            self.calls.append(call)
            if self.on_call is not None:
                await self.on_call(call)
            await asyncio.sleep(self.delay_s)
            status, payload = self.answer
            return JSONResponse(payload, status_code=status)

        return app


@dataclass
class Reply:
    """One answer of the fake Messages API: a recorded SSE stream, or an error status."""

    status: int = 200
    sse_file: str | None = None
    json_file: str | None = None


@dataclass
class FakeAnthropic:
    """`POST /v1/messages` replaying `replies` in order; records each request body."""

    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/messages")
        async def messages(request: Request) -> Any:
            self.requests.append(await request.json())
            reply = self.replies.pop(0)
            if reply.sse_file is None:
                assert reply.json_file is not None
                return JSONResponse(
                    _load_json(reply.json_file),
                    status_code=reply.status,
                    headers={"request-id": "req_fake"},
                )
            blocks = (FIXTURES / reply.sse_file).read_bytes().split(b"\n\n")

            async def stream() -> AsyncIterator[bytes]:
                # One SSE event per write, as the API sends them.
                for block in blocks:
                    if block.strip():
                        yield block + b"\n\n"
                        await asyncio.sleep(0.001)

            return StreamingResponse(
                stream(), media_type="text/event-stream", headers={"request-id": "req_fake"}
            )

        return app


def _load_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())
