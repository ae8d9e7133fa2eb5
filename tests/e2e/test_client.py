"""`broker.client` against real servers: restarts, random cuts, errors, the caller's httpx.

The load is the scripted `bench events=N rate=R size=9` run: N `text` events whose texts
are `"00000000 "`, `"00000001 "`, ..., so order and completeness are checked by content too.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from broker.client import (
    AuthenticationError,
    BadRequestError,
    BrokerClient,
    ConnectionState,
    GaveUpError,
    NotFoundError,
    SyncBrokerClient,
)
from broker.store.postgres import Store
from broker.web.settings import Settings
from broker.web.sse import encode_event
from models.events import StoredEvent, Text
from tests.e2e.client_harness import CuttingProxy, System, free_port, running_system
from tests.servers import serve


@pytest.fixture
async def system(settings: Settings, store: Store, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(settings, store, tmp_path / "reader-data") as running:
        yield running


def bench(events: int, rate: int) -> str:
    return f"bench events={events} rate={rate} size=9"


def assert_whole_run(seen: list[StoredEvent], events: int) -> None:
    """run_started, the N bench texts in order, complete: seqs 1..N+2, each once."""
    assert [s.seq for s in seen] == list(range(1, events + 3))
    assert seen[0].event.event_type == "run_started"
    assert seen[-1].event.event_type == "complete"
    texts = [s.event.data.text for s in seen[1:-1] if isinstance(s.event, Text)]
    assert texts == [f"{i:08d} " for i in range(events)]


async def test_events_yield_each_seq_once_across_a_reading_broker_kill_and_restart(
    system: System,
) -> None:
    events = 150
    reader = system.reader()
    await reader.start()
    states: list[ConnectionState] = []
    try:
        async with (
            BrokerClient(system.broker_url, system.token) as producing,
            BrokerClient(
                reader.url, system.token, base_delay_s=0.05, max_delay_s=0.5, max_attempts=200
            ) as client,
        ):
            thread = await producing.create_thread()
            run = await producing.start_run(thread.thread_id, bench(events, 50))
            seen: list[StoredEvent] = []
            restart: asyncio.Task[None] | None = None
            async for stored in client.events(run.run_id, on_state=states.append):
                seen.append(stored)
                if stored.seq == 10 and restart is None:
                    assert (await producing.run(run.run_id)).status == "streaming"
                    await reader.kill()
                    restart = asyncio.create_task(reader.start())
            assert restart is not None
            await restart
            assert_whole_run(seen, events)
            assert (await client.run(run.run_id)).status == "completed"
    finally:
        await reader.stop()
    assert "reconnecting" in states
    assert states[0] == "live" and states[-1] == "live"


async def test_events_yield_each_seq_once_with_connections_cut_at_random_bytes(
    system: System,
) -> None:
    rng = random.Random(1212)
    port = int(system.broker_url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, rng, cut_range=(0, 1500))
    async with (
        proxy.running() as proxy_url,
        BrokerClient(system.broker_url, system.token) as producing,
        BrokerClient(
            proxy_url, system.token, base_delay_s=0.001, max_delay_s=0.01, max_attempts=60
        ) as client,
    ):
        for _ in range(12):
            events = rng.randrange(5, 60)
            thread = await producing.create_thread()
            run = await producing.start_run(thread.thread_id, bench(events, 400))
            seen = [stored async for stored in client.events(run.run_id)]
            assert_whole_run(seen, events)
    assert proxy.cuts >= 12  # every run was cut at least once on average
    assert proxy.connections > proxy.cuts


async def test_events_resume_from_a_given_cursor_and_from_now(system: System) -> None:
    async with BrokerClient(system.broker_url, system.token) as client:
        thread = await client.create_thread("cursor")
        run = await client.start_run(thread.thread_id, bench(5, 500))
        whole = [stored async for stored in client.events(run.run_id)]
        assert_whole_run(whole, 5)
        after_three = [stored.seq async for stored in client.events(run.run_id, cursor=3)]
        assert after_three == [4, 5, 6, 7]
        after_three_int = [stored.seq async for stored in client.events(run.run_id, cursor="3")]
        assert after_three_int == [4, 5, 6, 7]
        info = await client.run(run.run_id)
        assert (info.status, info.last_seq, info.thread_id) == ("completed", 7, thread.thread_id)


async def test_client_uses_the_callers_httpx_client_and_leaves_it_open(system: System) -> None:
    seen_paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen_paths.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}, timeout=30) as http:
        async with BrokerClient(system.broker_url, system.token, http=http) as client:
            thread = await client.create_thread()
            run = await client.start_run(thread.thread_id, bench(2, 500))
            assert [s.seq async for s in client.events(run.run_id)] == [1, 2, 3, 4]
        assert not http.is_closed
        assert seen_paths == [
            "/api/threads",
            f"/api/threads/{thread.thread_id}/runs",
            f"/api/runs/{run.run_id}/subscribe",
        ]


async def test_sync_client_runs_the_same_calls_blocking(system: System) -> None:
    def script() -> tuple[list[int], str]:
        # Runs in a worker thread: the servers stay on the test's event loop.
        with SyncBrokerClient(system.broker_url, system.token) as client:
            thread = client.create_thread("sync")
            run = client.start_run(thread.thread_id, bench(3, 500))
            seqs = [stored.seq for stored in client.events(run.run_id)]
            with pytest.raises(NotFoundError):
                client.run(str(uuid.uuid4()))
            return seqs, client.run(run.run_id).status

    assert await asyncio.to_thread(script) == ([1, 2, 3, 4, 5], "completed")


async def test_contract_errors_map_to_the_client_error_tree(system: System) -> None:
    async with BrokerClient(system.broker_url, "not-a-token") as bad:
        with pytest.raises(AuthenticationError) as auth:
            await bad.create_thread()
        assert (auth.value.status, auth.value.code) == (401, "unauthorized")
        with pytest.raises(AuthenticationError):
            [s async for s in bad.events(str(uuid.uuid4()))]
    async with BrokerClient(system.broker_url, system.token) as client:
        for run_id in (str(uuid.uuid4()), "not-a-uuid"):
            with pytest.raises(NotFoundError) as missing:
                [s async for s in client.events(run_id)]
            assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(NotFoundError):
            await client.run(str(uuid.uuid4()))
        with pytest.raises(NotFoundError):
            await client.start_run(str(uuid.uuid4()), "hello")
        thread = await client.create_thread()
        with pytest.raises(BadRequestError) as blank:
            await client.start_run(thread.thread_id, "   ")
        assert (blank.value.status, blank.value.code) == (422, "validation_error")
        run = await client.start_run(thread.thread_id, bench(1, 500))
        with pytest.raises(BadRequestError) as cursor:
            [s async for s in client.events(run.run_id, cursor="soon")]
        assert (cursor.value.status, cursor.value.code) == (400, "invalid_cursor")


async def test_events_give_up_after_max_attempts_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with BrokerClient(
        url, "token", max_attempts=3, base_delay_s=0.001, max_delay_s=0.002
    ) as client:
        states: list[ConnectionState] = []
        with pytest.raises(GaveUpError) as gave_up:
            [s async for s in client.events(str(uuid.uuid4()), on_state=states.append)]
        assert (gave_up.value.attempts, gave_up.value.code) == (3, "unavailable")
        assert isinstance(gave_up.value.__cause__, Exception)
        assert states == ["reconnecting", "reconnecting"]
        with pytest.raises(GaveUpError):
            await client.create_thread()
    with pytest.raises(ValueError):
        BrokerClient(url, "token", max_attempts=0)


def _frame(seq: int, event_type: str, data: dict[str, Any]) -> bytes:
    wire = {"seq": seq, "event_type": event_type, "data": data, "ts": "2026-11-30T00:00:00Z"}
    return encode_event(json.dumps(wire), id=seq)


def scripted_broker(cursors: list[str | None]) -> FastAPI:
    """A stand-in broker whose subscribe answers, in turn: 503; events 1..3 then an end
    with no terminal event; from the cursor on, duplicates of 2..3, an unknown type (4),
    5, and `complete` (6). Its cancel route answers as the contract says."""
    app = FastAPI()

    @app.post("/api/runs/{run_id}/subscribe")
    async def subscribe(run_id: str, request: Request) -> Any:
        cursors.append((await request.json())["cursor"])
        if len(cursors) == 1:
            return JSONResponse({"error": {"code": "not_ready", "message": "x"}}, 503)
        frames = [_frame(i, "text", {"text": f"t{i}"}) for i in (1, 2, 3)]
        if len(cursors) > 2:
            frames = [_frame(i, "text", {"text": f"t{i}"}) for i in (2, 3)]
            frames += [
                _frame(4, "from_the_future", {}),
                _frame(5, "text", {"text": "t5"}),
                _frame(6, "complete", {"new_messages": []}),
            ]

        async def body() -> AsyncIterator[bytes]:
            for frame in frames:
                yield frame

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.post("/api/threads")
    async def create_thread() -> JSONResponse:
        body = {"error": {"code": "shutting_down", "message": "retry on another"}}
        return JSONResponse(body, 503)

    @app.post("/api/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> JSONResponse:
        if run_id == "done":
            return JSONResponse({"run_id": run_id, "status": "completed"}, 200)
        if run_id == "missing":
            return JSONResponse({"error": {"code": "not_found", "message": "no run"}}, 404)
        return JSONResponse({"run_id": run_id, "status": "streaming"}, 202)

    return app


async def test_events_retry_5xx_and_early_ends_drop_duplicates_and_unknown_types() -> None:
    cursors: list[str | None] = []
    async with (
        serve(scripted_broker(cursors)) as url,
        BrokerClient(url, "t", base_delay_s=0.001, max_delay_s=0.002) as client,
    ):
        seen = [s async for s in client.events("r1")]
    assert [s.seq for s in seen] == [1, 2, 3, 5, 6]
    assert cursors == [None, None, "3"]


async def test_a_cut_before_the_first_event_resumes_from_the_opening_id_not_from_now() -> None:
    cursors: list[str | None] = []
    app = FastAPI()

    @app.post("/api/runs/{run_id}/subscribe")
    async def subscribe(run_id: str, request: Request) -> StreamingResponse:
        cursors.append((await request.json())["cursor"])
        frames = [b"retry: 1000\nid: 7\n\n"]  # "now" resolved to 7, then the cut
        if len(cursors) > 1:
            frames = [_frame(8, "complete", {"new_messages": []})]

        async def body() -> AsyncIterator[bytes]:
            for frame in frames:
                yield frame

        return StreamingResponse(body(), media_type="text/event-stream")

    async with (
        serve(app) as url,
        BrokerClient(url, "t", base_delay_s=0.001, max_delay_s=0.002) as client,
    ):
        seen = [s.seq async for s in client.events("r1", cursor="now")]
    assert (seen, cursors) == ([8], ["now", "7"])


async def test_cancel_reads_accepted_finished_and_unknown_answers() -> None:
    async with serve(scripted_broker([])) as url, BrokerClient(url, "t") as client:
        assert (await client.cancel("r1")).status == "streaming"
        assert (await client.cancel("done")).status == "completed"
        with pytest.raises(NotFoundError) as missing:
            await client.cancel("missing")
        assert missing.value.code == "not_found"


async def test_a_5xx_on_a_single_request_is_not_resent_and_keeps_its_code() -> None:
    async with serve(scripted_broker([])) as url, BrokerClient(url, "t") as client:
        with pytest.raises(GaveUpError) as refused:
            await client.create_thread()
        assert (refused.value.attempts, refused.value.code) == (1, "shutting_down")


async def test_cancel_against_the_real_broker_ends_the_run_cancelled(system: System) -> None:
    async with BrokerClient(system.broker_url, system.token) as client:
        thread = await client.create_thread()
        run = await client.start_run(thread.thread_id, bench(1000, 20))
        assert (await client.cancel(run.run_id)).run_id == run.run_id
        seen = [s async for s in client.events(run.run_id)]
        assert seen[-1].event.event_type == "cancelled"
