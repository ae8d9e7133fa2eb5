"""Runs as read-only Durable Streams at /ds/runs/{id}, read by our tests and the official client."""

from __future__ import annotations

import asyncio
import json
import sys

from broker.store.postgres import Store
from broker.web.settings import Settings
from durable.offsets import offset_of, seq_of
from tests.e2e.node import node_dir
from tests.e2e.test_subscribe_support import (
    append_texts,
    delete_raw_events,
    finish_run,
    hub_of,
    new_run,
    running_broker,
    token_for,
    until,
)


async def test_a_run_reads_as_a_json_stream_and_refuses_writes(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 3)
    auth = token_for(settings, run)
    async with running_broker(settings) as (_, client):
        url = f"/ds/runs/{run.run_id}"
        read = await client.get(url, params={"offset": "-1"}, headers=auth)
        assert read.headers["content-type"] == "application/json"
        assert [e["seq"] for e in read.json()] == [1, 2, 3, 4]
        assert read.headers["stream-next-offset"] == offset_of(4)
        assert "stream-closed" not in read.headers
        after = await client.get(url, params={"offset": offset_of(2)}, headers=auth)
        assert [e["seq"] for e in after.json()] == [3, 4]
        for method in ("POST", "PUT", "DELETE"):
            refused = await client.request(method, url, content=b"[1]", headers=auth)
            assert refused.status_code == 405
        other = await new_run(store, workspace="someone-else")
        stranger = token_for(settings, other)
        assert (await client.get(url, headers=stranger)).status_code == 404
        assert (await client.get(url)).status_code == 401
        assert (await client.get("/ds/runs/not-a-uuid", headers=auth)).status_code == 404


async def test_long_poll_on_a_run_is_woken_through_the_shared_tail(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    auth = token_for(settings, run)
    async with running_broker(settings) as (app, client):
        url = f"/ds/runs/{run.run_id}"
        params = {"offset": offset_of(1), "live": "long-poll"}
        polls = [
            asyncio.create_task(client.get(url, params=params, headers=auth)) for _ in range(5)
        ]
        await until(lambda: hub_of(app).viewer_count == 5, "5 long-polls on the tail")
        assert hub_of(app).tail_count == 1
        await append_texts(store, run.run_id, 2, 2)
        for answer in await asyncio.gather(*polls):
            assert answer.status_code == 200
            assert [e["seq"] for e in answer.json()] == [2, 3]
        await finish_run(store, run, 4)
        last = await client.get(url, params={"offset": offset_of(3)}, headers=auth)
        assert last.json()[0]["event_type"] == "complete"
        assert last.headers["stream-closed"] == "true"
        assert hub_of(app).viewer_count == 0


async def test_events_past_retention_answer_410(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    await finish_run(store, run, 2)
    await delete_raw_events(store, run.run_id)
    async with running_broker(settings) as (_, client):
        gone = await client.get(
            f"/ds/runs/{run.run_id}", params={"offset": "-1"}, headers=token_for(settings, run)
        )
        assert gone.status_code == 410


async def test_official_client_reads_a_live_run_across_a_disconnect(
    settings: Settings, store: Store
) -> None:
    """@durable-streams/client follows a live run, drops, resumes: every event exactly once."""
    directory = node_dir()
    run = await new_run(store)
    token = token_for(settings, run)["Authorization"].removeprefix("Bearer ")
    total = 60
    async with running_broker(settings) as (app, client):
        url = f"{str(client.base_url).rstrip('/')}/ds/runs/{run.run_id}"
        reader = await asyncio.create_subprocess_exec(
            "node",
            "read_run.mjs",
            url,
            token,
            "20",
            cwd=directory,
            stdout=asyncio.subprocess.PIPE,
            stderr=sys.stderr,
        )
        await until(lambda: hub_of(app).viewer_count == 1, "the client to follow the run live")
        seq = 2
        while seq < total:
            seq = await append_texts(store, run.run_id, seq, min(3, total - seq)) + 1
            await asyncio.sleep(0.02)
        await finish_run(store, run, total)
        out, _ = await asyncio.wait_for(reader.communicate(), 60)
    assert reader.returncode == 0
    result = json.loads(out)
    assert result["seqs"] == list(range(1, total + 1))
    assert 20 <= seq_of(result["resumedFrom"]) < total  # it did drop mid-run
