"""Takeover across real processes: two broker replicas, the agent service, one PostgreSQL.

- `kill -9` of the replica producing a run: the other's sweeper claims it once
  the lease expires and re-attaches after `agent_cursor`; a viewer reconnecting
  there reads seq 1..N exactly once, and the transcript is an uninterrupted run's.
- `kill -9` of that replica and of the agent: the run ends `producer_lost`
  (status `interrupted`), every viewer sees it, the thread takes a new run.
- SIGTERM of the producing replica: its viewers' streams end cleanly, it
  releases its leases, and the other replica takes over at once although the
  lease is a minute long; nothing is lost, no traceback is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.web.settings import Settings
from tests.e2e.replicas import Node, cluster, watch

pytestmark = pytest.mark.slow

BENCH = "bench events=2000 rate=300"
# The reference run is a different run, so its `run_started` differs; the rest must not.
Transcript = list[tuple[str, Any]]


def _transcript(events: list[dict[str, Any]]) -> Transcript:
    return [(e["event_type"], e["data"]) for e in events if e["event_type"] != "run_started"]


def _assert_once_in_order(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def _viewer(node: Node, run_id: str) -> tuple[asyncio.Task[list[dict[str, Any]]], list[Any]]:
    """A viewer following the run on `node`; its events so far are in the list."""
    seen: list[dict[str, Any]] = []
    return asyncio.create_task(watch(node, run_id, into=seen)), seen


async def _until(seen: list[Any], count: int) -> None:
    """Wait (at most a minute) until a viewer has seen `count` events."""
    for _ in range(3000):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the viewer saw {len(seen)} events, not {count}")


def _claimed_by(node: Node, run_id: str) -> bool:
    return any("run_claimed" in line and run_id in line for line in node.log().splitlines())


async def _workspace(store: Store) -> Any:
    return await store.ensure_workspace("acme")


async def test_kill_9_of_the_producing_replica_the_other_takes_over_exactly(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    async with cluster(settings, tmp_path, workspace_id=await _workspace(store), lease_s=2) as c:
        reference_thread, reference = await c.start_run(c.b, BENCH)
        thread, run_id = await c.start_run(c.a, BENCH)
        viewer, seen = _viewer(c.a, run_id)
        await _until(seen, 300)

        c.a.kill()
        with contextlib.suppress(httpx.HTTPError):
            await viewer  # the connection broke with the replica
        assert 300 <= len(seen) < 2002
        rest = await asyncio.wait_for(watch(c.b, run_id, cursor=seen[-1]["seq"]), 90)

        events = seen + rest
        _assert_once_in_order(events)
        assert events[-1]["event_type"] == "complete"
        assert _transcript(events) == _transcript(await watch(c.b, reference))
        assert _claimed_by(c.b, run_id)
        run = (await c.b.http.get(f"/api/runs/{run_id}")).json()
        assert run["status"] == "completed"
        assert run["last_seq"] == len(events)
        messages = (await c.b.http.get(f"/api/threads/{thread}/messages")).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        expected = await c.b.http.get(f"/api/threads/{reference_thread}/messages")
        assert [m["content"] for m in messages] == [
            m["content"] for m in expected.json()["messages"]
        ]
        # And the whole run, read again from the start on the survivor, is the same.
        assert await watch(c.b, run_id) == events


async def test_kill_9_of_the_replica_and_the_agent_ends_the_run_producer_lost(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    async with cluster(settings, tmp_path, workspace_id=await _workspace(store), lease_s=2) as c:
        thread, run_id = await c.start_run(c.a, BENCH)
        on_a, seen_a = _viewer(c.a, run_id)
        on_b, _ = _viewer(c.b, run_id)
        await _until(seen_a, 100)

        # The replica first: killed second, it could see the agent's stream break and
        # end the run itself (`agent_stream_failed`) in between.
        c.a.kill()
        c.agent.kill()
        with contextlib.suppress(httpx.HTTPError):
            await on_a
        from_b = await asyncio.wait_for(on_b, 90)
        resumed = await asyncio.wait_for(watch(c.b, run_id, cursor=seen_a[-1]["seq"]), 30)

        for events in (from_b, seen_a + resumed):
            _assert_once_in_order(events)
            assert events[-1]["event_type"] == "error"
            assert events[-1]["data"]["error_type"] == "producer_lost"
        assert from_b[-1] == resumed[-1]
        assert _claimed_by(c.b, run_id)
        run = (await c.b.http.get(f"/api/runs/{run_id}")).json()
        assert run["status"] == "interrupted"
        # The thread is not stuck: it takes a new message at once.
        await c.start_run_on(c.b, thread, "hello again")


async def test_sigterm_hands_the_run_over_at_once_and_viewers_end_cleanly(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    # A minute-long lease: a takeover that waited for it would not finish in the bounds below.
    async with cluster(settings, tmp_path, workspace_id=await _workspace(store), lease_s=60) as c:
        _, reference = await c.start_run(c.b, BENCH)
        _, run_id = await c.start_run(c.a, BENCH)
        viewer, seen = _viewer(c.a, run_id)
        waiting = asyncio.create_task(
            c.a.http.post(
                f"/api/runs/{run_id}/subscribe",
                json={"cursor": None},
                headers={"Accept": "application/json"},
            )
        )
        await _until(seen, 300)

        c.a.terminate()
        # The stream ends (no protocol error), and the waiting document is refused politely.
        await asyncio.wait_for(viewer, 5)
        refused = await asyncio.wait_for(waiting, 5)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"]
        assert await c.a.exited() in (0, -15)

        rest = await asyncio.wait_for(watch(c.b, run_id, cursor=seen[-1]["seq"]), 40)
        events = seen + rest
        _assert_once_in_order(events)
        assert events[-1]["event_type"] == "complete"
        assert _transcript(events) == _transcript(await watch(c.b, reference))
        assert _claimed_by(c.b, run_id)
        log = c.a.log()
        assert "Traceback" not in log, log[-3000:]
        assert "run_handed_over" in log


async def test_a_cluster_shares_one_database(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """Any replica serves any run's viewers: a run started on one is read on the other."""
    async with cluster(settings, tmp_path, workspace_id=await _workspace(store), lease_s=5) as c:
        _, run_id = await c.start_run(c.a, "bench events=20 rate=200")
        on_a, on_b = await asyncio.gather(watch(c.a, run_id), watch(c.b, run_id))
        assert on_a == on_b
        _assert_once_in_order(on_a)
        assert on_a[-1]["event_type"] == "complete"
