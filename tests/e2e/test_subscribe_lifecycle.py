"""A subscription's life over a real server: wake-ups, keepalives, endings, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store.postgres import Store
from broker.store.records import RunRecord
from broker.web.settings import Settings
from broker.web.sse import iter_sse
from tests.e2e.test_subscribe_support import (
    append_texts,
    delete_raw_events,
    finish_run,
    hub_of,
    metrics_of,
    new_run,
    running_broker,
    sample,
    seqs,
    sse_of,
    subscribe,
    token_for,
    until,
)


class Watcher:
    """A viewer that records when each event arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}

    async def record(self, event: dict[str, Any]) -> None:
        self.arrived[event["seq"]] = time.monotonic()

    async def latency(self, store: Store, run: RunRecord, seq: int) -> float:
        committed = time.monotonic()
        await append_texts(store, run.run_id, seq, 1)
        await until(lambda: seq in self.arrived, f"seq {seq}", within_s=30)
        return self.arrived[seq] - committed


async def test_notify_beats_the_poll_and_comes_back_after_listen_is_killed(
    settings: Settings, store: Store, engine: AsyncEngine
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    # A 5 s poll: a delivery well under it can only have been woken by NOTIFY.
    async with running_broker(settings, poll_interval_ms=5000) as (app, client):
        listener = hub_of(app).listener
        assert listener is not None
        await until(lambda: listener.connected, "LISTEN")
        watcher = Watcher()
        task = asyncio.create_task(subscribe(client, run, headers, on_event=watcher.record))
        await until(lambda: 1 in watcher.arrived, "the first event")
        assert await watcher.latency(store, run, 2) < 1.0
        old_pid = listener.backend_pid
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": old_pid})
        await until(lambda: listener.connects == 2 and listener.connected, "a new LISTEN")
        assert listener.backend_pid != old_pid
        assert await watcher.latency(store, run, 3) < 1.0
        await finish_run(store, run, 4)
        assert seqs(await task) == [1, 2, 3, 4]


async def test_headers_retry_hint_and_keepalive_while_idle(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    async with running_broker(settings, keepalive_s=0.2) as (_, client):
        url = f"/api/runs/{run.run_id}/subscribe"
        async with client.stream("POST", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache, no-transform"
            assert response.headers["x-accel-buffering"] == "no"
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if body.count(b": keepalive\n\n") >= 2:
                    break
    # The opening block names the resolved cursor (null: 0) as the last event id.
    assert body.startswith(b"retry: 1000\nid: 0\n\nid: 1\ndata: {")
    assert [event.json()["seq"] for event in iter_sse([body])] == [1]


async def test_a_finished_run_is_sent_and_closed_at_once(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 3)
    await finish_run(store, run, 5)
    headers = token_for(settings, run)
    async with running_broker(settings) as (app, client):
        async with asyncio.timeout(5):  # no waiting for a keepalive or a timeout
            answer = await client.post(f"/api/runs/{run.run_id}/subscribe", headers=headers)
        assert [event.json()["seq"] for event in iter_sse([answer.content])] == [1, 2, 3, 4, 5]
        assert hub_of(app).tail_count == 0  # nothing to follow: no tail was made


@pytest.mark.parametrize(
    ("status", "fields", "event_type", "data"),
    [
        (
            "completed",
            {"answer": "forty-two"},
            "complete",
            {"new_messages": [{"role": "assistant", "content": "forty-two"}]},
        ),
        (
            "failed",
            {"error": "the agent vanished", "error_type": "producer_lost"},
            "error",
            {"error": "the agent vanished", "error_type": "producer_lost"},
        ),
        ("cancelled", {"aborted_by": "ann"}, "cancelled", {"by": "ann"}),
    ],
)
async def test_after_retention_a_subscriber_gets_the_ending_with_the_terminal_seq(
    settings: Settings,
    store: Store,
    status: str,
    fields: dict[str, str],
    event_type: str,
    data: dict[str, Any],
) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 8)
    await finish_run(store, run, 10, status=status, **fields)
    await delete_raw_events(store, run.run_id)
    headers = token_for(settings, run)
    async with running_broker(settings) as (_, client):
        for cursor in (None, "0", "5", "9"):
            events = await subscribe(client, run, headers, cursor=cursor)
            assert [(e["seq"], e["event_type"], e["data"]) for e in events] == [
                (10, event_type, data)
            ], cursor
        assert await subscribe(client, run, headers, cursor="10") == []
        assert await subscribe(client, run, headers, cursor="now") == []


async def test_a_disconnect_is_noticed_at_once_not_at_the_next_keepalive(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    async with running_broker(settings, keepalive_s=60) as (app, client):
        hub = hub_of(app)
        url = f"/api/runs/{run.run_id}/subscribe"
        async with client.stream("POST", url, headers=headers) as response:
            async with contextlib.aclosing(sse_of(response)) as stream:
                assert (await anext(stream)).json()["seq"] == 1
            assert hub.viewer_count == 1
            # The hub's two tasks, and this stream's disconnect watch (the body runs in the
            # request's own task).
            assert len(our_tasks()) == 3
        gone = time.monotonic()
        await until(lambda: hub.viewer_count == 0 and hub.tail_count == 0, "the viewer to go")
        assert time.monotonic() - gone < 2.0


def our_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks whose code lives in the `subscribe` package."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and "/subscribe/" in code.co_filename:
            found.add(task)
    return found


async def test_connect_disconnect_cycles_leave_nothing_behind(
    settings: Settings, store: Store
) -> None:
    runs = [await new_run(store) for _ in range(3)]
    headers = token_for(settings, runs[0])
    rng = random.Random(5)
    async with running_broker(settings) as (app, client):
        hub = hub_of(app)
        baseline = our_tasks()
        assert {task.get_name() for task in baseline} == {
            "subscribe.hub.reader",
            "subscribe.hub.listener",
        }

        async def cycles(count: int) -> None:
            for _ in range(count):
                run = rng.choice(runs)
                if rng.random() < 0.5:
                    url, method = f"/api/runs/{run.run_id}/subscribe", "POST"
                else:
                    url, method = f"/api/runs/{run.run_id}/events", "GET"
                async with client.stream(method, url, headers=headers) as response:
                    assert response.status_code == 200
                    if rng.random() < 0.7:  # else: gone before reading a byte
                        async for _ in response.aiter_bytes():
                            break

        await asyncio.gather(*(cycles(50) for _ in range(10)))
        await until(lambda: hub.viewer_count == 0 and hub.tail_count == 0, "every viewer gone")
        metrics = metrics_of(app)
        assert sample(metrics, "broker_viewers") == 0 and sample(metrics, "broker_tails") == 0
        await until(lambda: our_tasks() == baseline, "no task of ours but the hub's")
        # And the broker still serves: the tails come back for a new viewer.
        await finish_run(store, runs[0], 2)
        assert seqs(await subscribe(client, runs[0], headers)) == [1, 2]


async def test_shutting_down_ends_live_streams(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    app: FastAPI
    async with running_broker(settings) as (app, client):
        task = asyncio.create_task(subscribe(client, run, headers))
        await until(lambda: hub_of(app).viewer_count == 1, "the viewer to be live")
        await hub_of(app).aclose()  # what the lifespan does first on shutdown
        assert seqs(await task) == [1]  # closed without a terminal event: the client resumes
