"""The event stream over a real uvicorn server and PostgreSQL: fan-out, cursors, hand-over."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.store.records import RunRecord
from broker.web.settings import Settings
from broker.web.sse import iter_sse
from models.ids import RunId
from tests.e2e.test_subscribe_support import (
    append_texts,
    finish_run,
    head_is,
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


async def write_live(store: Store, run: RunRecord, total: int, seed: int) -> None:
    """Append seqs 2..total-1 in random small flushes at a random pace, then finish."""
    rng = random.Random(seed)
    seq = 2
    while seq < total:
        count = min(rng.randint(1, 5), total - seq)
        seq = await append_texts(store, run.run_id, seq, count) + 1
        await asyncio.sleep(rng.uniform(0, 0.01))
    await finish_run(store, run, total)


async def test_fifty_viewers_receive_the_identical_full_sequence(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    async with running_broker(settings) as (app, client):
        viewers = [asyncio.create_task(subscribe(client, run, headers)) for _ in range(50)]
        await until(lambda: hub_of(app).viewer_count == 50, "50 viewers to be live")
        await write_live(store, run, 120, seed=1)
        results = await asyncio.gather(*viewers)
        assert hub_of(app).tail_count == 0
    expected = list(range(1, 121))
    for events in results:
        assert seqs(events) == expected
        assert events == results[0]  # identical, byte for byte after parsing
    assert results[0][0]["event_type"] == "run_started"
    assert results[0][-1]["event_type"] == "complete"


@pytest.mark.parametrize("viewers", [1, 200])
async def test_tail_reads_per_flush_do_not_grow_with_viewers(
    settings: Settings, store: Store, viewers: int
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    # Polling is far away: every read counted here was woken by a NOTIFY.
    async with running_broker(settings, poll_interval_ms=60_000) as (app, client):
        hub, metrics = hub_of(app), metrics_of(app)
        await until(lambda: hub.listener is not None and hub.listener.connected, "LISTEN")
        tasks = [asyncio.create_task(subscribe(client, run, headers)) for _ in range(viewers)]
        await until(lambda: hub.viewer_count == viewers, "viewers to be live")
        await hub.sweep()
        before = sample(metrics, "broker_tail_reads_total")
        for seq in range(2, 12):
            await append_texts(store, run.run_id, seq, 1)
            await until(head_is(hub, run.run_id, seq), f"seq {seq}")
        assert sample(metrics, "broker_tail_reads_total") - before == 10
        await finish_run(store, run, 12)
        for events in await asyncio.gather(*tasks):
            assert seqs(events) == list(range(1, 13))


async def test_every_cursor_yields_exactly_the_events_after_it(
    settings: Settings, store: Store
) -> None:
    finished, live = await new_run(store), await new_run(store)
    await append_texts(store, finished.run_id, 2, 18)
    await finish_run(store, finished, 20)
    await append_texts(store, live.run_id, 2, 9)
    headers = token_for(settings, finished)
    async with running_broker(settings) as (app, client):
        for k in range(21):
            events = await subscribe(client, finished, headers, cursor=str(k))
            assert seqs(events) == list(range(k + 1, 21)), k
        assert seqs(await subscribe(client, finished, headers)) == list(range(1, 21))
        assert await subscribe(client, finished, headers, cursor="now") == []
        # The same on a run still streaming: seqs 1..10 stored, 11..20 to come.
        pending = {
            k: asyncio.create_task(subscribe(client, live, headers, cursor=str(k)))
            for k in range(25)
        }
        await until(lambda: hub_of(app).viewer_count == 25, "25 viewers to be live")
        await write_live(store, live, 20, seed=2)
        for k, task in pending.items():
            # Past the end (k >= 20) the stream closes empty once the run ends.
            assert seqs(await task) == list(range(k + 1, 21)), k


async def test_now_yields_only_events_after_the_head(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 4)
    headers = token_for(settings, run)
    async with running_broker(settings) as (app, client):
        task = asyncio.create_task(subscribe(client, run, headers, cursor="now"))
        await until(lambda: hub_of(app).viewer_count == 1, "the viewer to be live")
        await append_texts(store, run.run_id, 6, 3)
        await finish_run(store, run, 9)
        assert seqs(await task) == [6, 7, 8, 9]


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_random_disconnects_and_reconnects_see_each_event_exactly_once(
    settings: Settings, store: Store, seed: int
) -> None:
    rng = random.Random(seed)
    run = await new_run(store)
    headers = token_for(settings, run)
    total = 300
    async with running_broker(settings) as (_, client):
        writer = asyncio.create_task(write_live(store, run, total, seed))
        received: list[dict[str, Any]] = []
        connections = 0
        while not received or received[-1]["event_type"] != "complete":
            cursor = str(received[-1]["seq"]) if received else None
            connections += 1
            if rng.random() < 0.5:
                got = await subscribe(client, run, headers, cursor=cursor, limit=rng.randint(0, 12))
            else:
                got = await get_events(client, run, headers, rng.randint(0, 12), cursor)
            received += got
        await writer
    assert seqs(received) == list(range(1, total + 1))
    assert connections > 30


async def get_events(
    client: httpx.AsyncClient,
    run: RunRecord,
    headers: dict[str, str],
    limit: int,
    last_event_id: str | None,
) -> list[dict[str, Any]]:
    """`EventSource`'s way: GET, resuming with `Last-Event-ID`."""
    events: list[dict[str, Any]] = []
    if limit == 0:
        return events
    if last_event_id is not None:
        headers = {**headers, "Last-Event-ID": last_event_id}
    url = f"/api/runs/{run.run_id}/events"
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        async with contextlib.aclosing(sse_of(response)) as stream:
            async for message in stream:
                events.append(message.json())
                if message.json()["event_type"] == "complete" or len(events) == limit:
                    break
    return events


async def test_last_event_id_wins_over_the_cursor_parameter(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 5)
    await finish_run(store, run, 7)
    headers = token_for(settings, run)
    async with running_broker(settings) as (_, client):
        url = f"/api/runs/{run.run_id}/events"
        answer = await client.get(url, params={"cursor": "1"}, headers=headers)
        assert [e.json()["seq"] for e in iter_sse([answer.content])] == [2, 3, 4, 5, 6, 7]
        headers = {**headers, "Last-Event-ID": "4"}
        answer = await client.get(url, params={"cursor": "1"}, headers=headers)
        assert [e.json()["seq"] for e in iter_sse([answer.content])] == [5, 6, 7]


async def test_rows_written_during_the_hand_over_arrive_once_and_in_order(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 4)  # 1..5 stored before the viewer comes
    headers = token_for(settings, run)
    stages: list[str] = []
    async with running_broker(settings) as (app, client):
        hub = hub_of(app)

        def head_reached(run_id: RunId, seq: int) -> bool:
            return (hub.tail_head(run_id) or 0) >= seq

        async def force_races(stage: str, run_id: RunId) -> None:
            if stage == "registered":
                # After joining the tail, before the catch-up read: these rows reach
                # the viewer twice, through its queue and through the table.
                await append_texts(store, run_id, 6, 3)
                await until(lambda: head_reached(run_id, 8), "the tail to publish 6..8")
            elif stage == "caught_up":
                # After the catch-up read: only the queue has these.
                await append_texts(store, run_id, 9, 2)
                await until(lambda: head_reached(run_id, 10), "the tail to publish 9..10")
            # Recorded once the rows are in, so the rows after the hand-over below
            # are written only when it is over.
            stages.append(stage)

        hub.hook = force_races
        task = asyncio.create_task(subscribe(client, run, headers, cursor="2"))
        await until(lambda: stages == ["registered", "caught_up"], "the hand-over")
        await append_texts(store, run.run_id, 11, 2)
        await finish_run(store, run, 13)
        assert seqs(await task) == list(range(3, 14))
