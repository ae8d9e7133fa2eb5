"""The sweeper and the drain in one broker against the fake agent and a real database.

A run whose writer is gone (its lease expired) is claimed and re-attached
after its `agent_cursor`; a run the agent no longer has, or an agent that
stays unreachable, ends `producer_lost` (status `interrupted`) and the thread
takes new messages. A live lease is left alone. Draining (the shutdown
signal) refuses new runs with 503 + `Retry-After`, stops claiming, and ends
open streams cleanly.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunRecord
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from models.events import ChatMessage, Text, TextData
from models.ids import ThreadId
from tests.e2e.producer_harness import Stack, broker_and_agent, unbound_url
from tests.fakes.agent import Gate, complete, text

FAST_SWEEP = {"sweep_s": 0.05}


async def _orphan(stack: Stack, message: str, *, stored: int = 0, lease_s: float = 0) -> RunRecord:
    """A run left by a writer that died after storing `stored` agent events (ids 1..n)."""
    thread = await stack.store.get_thread(
        stack.workspace_id, ThreadId(uuid.UUID(await stack.new_thread()))
    )
    run = await stack.store.create_run(
        thread,
        writer_id="a-dead-replica",
        lease_s=lease_s,
        message=ChatMessage(role="user", content=message),
    )
    now = datetime.now(UTC)
    await stack.store.append_events(
        [
            PendingEvent(run.run_id, 2 + i, Text(data=TextData(text=chr(97 + i))), now)
            for i in range(stored)
        ]
    )
    async with stack.store.transaction() as conn:
        await conn.execute(
            sa.text("UPDATE runs SET last_seq = :last, agent_cursor = :cursor WHERE id = :id"),
            {"last": 1 + stored, "cursor": str(stored) if stored else None, "id": run.run_id},
        )
    return run


async def _ended(stack: Stack, run: RunRecord) -> Any:
    """The run's row once it has ended (at most 20 s)."""
    for _ in range(1000):
        row = await stack.run_row(str(run.run_id))
        if row.status not in ("pending", "streaming"):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run.run_id} did not end")


async def test_an_orphaned_run_is_resumed_exactly_after_its_agent_cursor(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        stack.fake.script("abc", text("a"), text("b"), text("c"), complete("abc"))
        run = await _orphan(stack, "abc", stored=2)
        stack.fake.knows(str(run.run_id), "abc")
        row = await _ended(stack, run)
        (reattach,) = [c for c in stack.fake.calls if c.path == f"/runs/{run.run_id}/stream"]
        assert reattach.headers["last-event-id"] == "2"
        events = await stack.events(str(run.run_id))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.event.event_type for e in events] == ["run_started", *["text"] * 3, "complete"]
    assert [e.event.data.text for e in events[1:4]] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert (row.status, row.writer_id, row.agent_cursor) == ("completed", None, "4")


async def test_a_run_the_agent_no_longer_has_ends_producer_lost_and_frees_the_thread(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        run = await _orphan(stack, "forgotten", stored=1)
        viewer = asyncio.create_task(_sse(stack.client, str(run.run_id)))
        row = await _ended(stack, run)
        seen = await asyncio.wait_for(viewer, 10)
        assert (row.status, row.error_type) == ("interrupted", "producer_lost")
        assert [e["seq"] for e in seen] == [1, 2, 3]
        assert seen[-1]["event_type"] == "error"
        assert seen[-1]["data"]["error_type"] == "producer_lost"
        state = (await stack.client.get(f"/api/runs/{run.run_id}")).json()
        assert state["status"] == "interrupted"
        stack.fake.script("next", complete("ok"))
        await stack.start_run(str(run.thread_id), "next")


async def test_a_pending_run_that_never_started_is_handled_the_same_way(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        run = await _orphan(stack, "never started", lease_s=60)
        async with stack.store.transaction() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE runs SET status = 'pending', writer_id = NULL, "
                    "lease_expires_at = NULL, created_at = now() - interval '1 hour' "
                    "WHERE id = :id"
                ),
                {"id": run.run_id},
            )
        row = await _ended(stack, run)
    assert (row.status, row.error_type) == ("interrupted", "producer_lost")


async def test_an_agent_unreachable_past_the_retries_ends_producer_lost(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, agent_url=unbound_url(), **FAST_SWEEP) as stack:
        run = await _orphan(stack, "nobody home", stored=1)
        row = await _ended(stack, run)
        events = await stack.events(str(run.run_id))
    assert (row.status, row.error_type) == ("interrupted", "producer_lost")
    assert [e.event.event_type for e in events] == ["run_started", "text", "error"]


async def test_a_live_lease_is_not_claimed(settings: Settings, store: Store) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        run = await _orphan(stack, "alive elsewhere", lease_s=60)
        await asyncio.sleep(0.3)  # several sweeps
        row = await stack.run_row(str(run.run_id))
        assert (row.status, row.writer_id) == ("streaming", "a-dead-replica")
        assert not [c for c in stack.fake.calls if str(run.run_id) in c.path]


async def test_draining_refuses_runs_with_retry_after_and_ends_streams_cleanly(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        run = await _orphan(stack, "held elsewhere", stored=2, lease_s=60)
        seen: list[dict[str, Any]] = []
        viewer = asyncio.create_task(_sse(stack.client, str(run.run_id), into=seen))
        for _ in range(1000):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)

        stack.app.state.drain.begin()
        await asyncio.wait_for(viewer, 5)  # the stream ended, no protocol error
        assert [e["seq"] for e in seen] == [1, 2, 3]

        refused = await stack.client.post(
            f"/api/threads/{await stack.new_thread()}/runs", json={"message": "late"}
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert int(refused.headers["retry-after"]) >= 1
        waiting = await stack.client.post(
            f"/api/runs/{run.run_id}/subscribe", headers={"Accept": "application/json"}
        )
        assert waiting.status_code == 503
        assert waiting.headers["retry-after"]
        # Nothing is claimed while draining, even once the lease has expired.
        async with stack.store.transaction() as conn:
            await conn.execute(
                sa.text("UPDATE runs SET lease_expires_at = now() WHERE id = :id"),
                {"id": run.run_id},
            )
        await asyncio.sleep(0.3)
        assert (await stack.run_row(str(run.run_id))).writer_id == "a-dead-replica"


async def _sse(
    client: httpx.AsyncClient, run_id: str, into: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    events = [] if into is None else into
    async with client.stream("POST", f"/api/runs/{run_id}/subscribe", json={}) as response:
        assert response.status_code == 200
        async for frame in aiter_sse(response.aiter_bytes()):
            events.append(frame.json())
    return events


async def test_a_run_this_replica_still_produces_is_not_taken_from_it(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, **FAST_SWEEP) as stack:
        gate = Gate()
        stack.fake.script("slow", text("a"), gate, text("b"), complete("ab"))
        run_id = (await stack.start_run(await stack.new_thread(), "slow"))["run_id"]
        await asyncio.wait_for(gate.reached.wait(), 10)
        # Its renewal is late (say the database was away): the lease has expired.
        async with stack.store.transaction() as conn:
            await conn.execute(
                sa.text("UPDATE runs SET lease_expires_at = now() - interval '1 s' WHERE id = :id"),
                {"id": uuid.UUID(run_id)},
            )
        await asyncio.sleep(0.3)  # several sweeps claim it, each time for this same writer
        gate.open()
        assert await stack.finished(run_id) == "stored"
        row = await stack.run_row(run_id)
        assert not [c for c in stack.fake.calls if c.path == f"/runs/{run_id}/stream"]
    assert row.status == "completed"
    assert [e.event.event_type for e in await stack.events(run_id)] == [
        "run_started",
        "text",
        "text",
        "complete",
    ]
