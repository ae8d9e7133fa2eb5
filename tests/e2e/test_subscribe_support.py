"""Helpers of the read side's integration and end-to-end tests (no tests in here).

Runs are created with the store and written with `Store.append_events`, which
NOTIFYs `run_id:last_seq` in the same transaction, exactly as the producer's
flush does. `finish_run` ends a run as the completion transaction does: the
terminal event, the run's final status and its messages commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, INTEGER, TEXT, UUID

from broker.app import create_app
from broker.store.notify import NOTIFY_CHANNEL
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunRecord
from broker.web.auth import mint_token
from broker.web.metrics import Metrics
from broker.web.settings import Settings
from broker.web.sse import ServerSentEvent, aiter_sse
from models.events import (
    TERMINAL_EVENT_TYPES,
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    StreamEvent,
    Text,
    TextData,
)
from models.ids import RunId
from subscribe.hub import Hub
from tests.servers import serve

__test__ = False

WRITER = "test-writer"

_INSERT = sa.text(
    "INSERT INTO raw_stream_events (run_id, seq, key_id, payload) "
    "SELECT * FROM unnest(:run_ids, :seqs, :key_ids, :payloads)"
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("key_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(BYTEA)),
)


async def new_run(store: Store, workspace: str = "acme") -> RunRecord:
    """A streaming run (seq 1 = run_started) in a new thread of `workspace`."""
    workspace_id = await store.ensure_workspace(workspace)
    thread = await store.create_thread(workspace_id, "a thread")
    return await store.create_run(thread, writer_id=WRITER, lease_s=600)


def token_for(settings: Settings, run: RunRecord) -> dict[str, str]:
    """Authorization headers for a member of the run's workspace."""
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), run.workspace_id)
    return {"Authorization": f"Bearer {token}"}


def pending(run_id: RunId, seq: int, event: StreamEvent | None = None) -> PendingEvent:
    """The event at `seq` of a run: a `text` delta naming its seq unless given."""
    event = event if event is not None else Text(data=TextData(text=f"t{seq} "))
    return PendingEvent(run_id, seq, event, datetime.now(UTC))


async def append_texts(store: Store, run_id: RunId, first: int, count: int) -> int:
    """Append `count` text events from `first` in one flush; returns the last seq."""
    await store.append_events([pending(run_id, seq) for seq in range(first, first + count)])
    return first + count - 1


async def insert_silently(store: Store, events: list[PendingEvent]) -> None:
    """Insert events WITHOUT a NOTIFY: only a poll or a sweep can find them."""
    async with store.transaction() as conn:
        await conn.execute(_INSERT, store.seal_events(events))


async def finish_run(
    store: Store,
    run: RunRecord,
    seq: int,
    *,
    status: str = "completed",
    answer: str = "the answer",
    error: str | None = None,
    error_type: str | None = None,
    aborted_by: str | None = None,
) -> StreamEvent:
    """Append the terminal event at `seq` and finish the run, in one transaction."""
    terminal: StreamEvent
    messages: list[ChatMessage] = []
    if status == "completed":
        messages = [ChatMessage(role="assistant", content=answer)]
        terminal = Complete(data=CompleteData(new_messages=messages))
    elif status == "cancelled":
        terminal = Cancelled(data=CancelledData(by=aborted_by))
    else:
        terminal = ErrorEvent(data=ErrorData(error=error or "", error_type=error_type or ""))
    async with store.transaction() as conn:
        await conn.execute(_INSERT, store.seal_events([pending(run.run_id, seq, terminal)]))
        await conn.execute(
            sa.text(
                "UPDATE runs SET status = :status, finished_at = now(), last_seq = :seq, "
                "error = :error, error_type = :error_type, aborted_by = :aborted_by, "
                "writer_id = NULL, lease_expires_at = NULL WHERE id = :id"
            ),
            {
                "status": status,
                "seq": seq,
                "error": error,
                "error_type": error_type,
                "aborted_by": aborted_by,
                "id": run.run_id,
            },
        )
        if status == "completed":
            asked = ChatMessage(role="user", content="the question")
            await store.insert_messages(conn, run.thread_id, run.run_id, [asked, *messages])
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": f"{run.run_id}:{seq}"},
        )
    return terminal


async def delete_raw_events(store: Store, run_id: RunId) -> None:
    """What the retention job does to a finished run."""
    async with store.transaction() as conn:
        await conn.execute(
            sa.text("DELETE FROM raw_stream_events WHERE run_id = :id"), {"id": run_id}
        )


async def until(predicate: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    """Wait for a condition to hold (checked every few ms), or fail naming it."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def subscribe(
    client: httpx.AsyncClient,
    run: RunRecord,
    headers: dict[str, str],
    *,
    cursor: str | None = None,
    limit: int | None = None,
    on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """POST subscribe and read SSE events until the terminal one (or `limit` of them)."""
    events: list[dict[str, Any]] = []
    if limit == 0:
        return events
    url = f"/api/runs/{run.run_id}/subscribe"
    async with client.stream("POST", url, json={"cursor": cursor}, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async with contextlib.aclosing(sse_of(response)) as stream:
            async for message in stream:
                event = message.json()
                assert message.id == str(event["seq"])
                events.append(event)
                if on_event is not None:
                    await on_event(event)
                if event["event_type"] in TERMINAL_EVENT_TYPES or len(events) == limit:
                    break
    return events


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]


def sse_of(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """A streaming response's events, as the async generator `aiter_sse` returns."""
    return cast(AsyncGenerator[ServerSentEvent, None], aiter_sse(response.aiter_bytes()))


def head_is(hub: Hub, run_id: RunId, seq: int) -> Callable[[], bool]:
    """Whether the run's tail has published up to `seq` (for `until`)."""
    return lambda: hub.tail_head(run_id) == seq


def sample(metrics: Metrics, name: str) -> float:
    """A metric's current value by its exported name (counters end in `_total`)."""
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


@contextlib.asynccontextmanager
async def running_broker(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A broker app on a real uvicorn server, and a client with room for many streams."""
    app = create_app(settings.model_copy(update=overrides))
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client,
    ):
        yield app, client


def hub_of(app: FastAPI) -> Hub:
    hub: Hub = app.state.hub
    return hub


def metrics_of(app: FastAPI) -> Metrics:
    metrics: Metrics = app.state.metrics
    return metrics
