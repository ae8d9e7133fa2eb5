"""Producers across shutdown and lease loss: flushed, handed over, stopped, nothing left running."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import sqlalchemy as sa

from broker.store.postgres import Store
from broker.web.settings import Settings
from broker.write.run_stream import RunStream
from models.ids import RunId
from tests.e2e.producer_harness import broker_and_agent, row_counts, serve_broker, serve_fake_agent
from tests.fakes.agent import Gate, Pause, Step, complete, text

_WRITE_SIDE_TASKS = ("producer:", "stream-manager-flush-loop", "retention")


def _write_side_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(_WRITE_SIDE_TASKS)]


def _pushed(stream: RunStream, seq: int) -> asyncio.Event:
    """An event set once the producer has pushed `seq` into the stream (stored or not)."""
    reached = asyncio.Event()
    push = stream.push

    def watched(*args: Any, **kwargs: Any) -> int | None:
        pushed = push(*args, **kwargs)
        if stream.next_seq > seq:
            reached.set()
        return pushed

    stream.push = watched  # type: ignore[method-assign]
    if stream.next_seq > seq:
        reached.set()
    return reached


async def test_shutdown_flushes_the_buffers_and_hands_running_runs_over(
    settings: Settings, store: Store
) -> None:
    first, gate = Gate(), Gate()
    async with serve_fake_agent(settings) as (fake, fake_url):
        # A long interval keeps the later events in the buffer until shutdown flushes them.
        async with serve_broker(settings, store, fake, fake_url, flush_interval_ms=60_000) as stack:
            steps: list[Step] = [text("a"), first, text("b"), text("c"), gate, complete("never")]
            fake.script("long", *steps)
            run_id = (await stack.start_run(await stack.new_thread(), "long"))["run_id"]
            stream = stack.app.state.streams.get(RunId(uuid.UUID(run_id)))
            await first.reached.wait()
            assert await stream.wait_stored(2)  # after an idle spell: flushed at once
            pushed = _pushed(stream, 4)
            first.open()
            await asyncio.wait_for(pushed.wait(), 5)
            assert stream.stored_seq == 2  # "b" and "c" wait for the next flush, 60 s away
            assert _write_side_tasks()
        # The broker has shut down; the agent is still there.
        assert _write_side_tasks() == []
        assert stream.outcome == "released"
        gate.open()

    events = await stack.events(run_id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    row = await stack.run_row(run_id)
    assert (row.status, row.writer_id, row.leased, row.last_seq, row.agent_cursor) == (
        "streaming",
        None,
        False,
        4,
        "3",  # exact: the agent's id of the last stored event, to re-attach from
    )
    assert run_id not in fake.cancelled  # the agent keeps the run for whoever re-attaches


async def test_a_run_posted_once_shutdown_has_begun_is_refused_with_503(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        thread_id = await stack.new_thread()
        await stack.app.state.producers.close()  # the first step of the lifespan's shutdown
        before = await row_counts(store)
        answer = await stack.client.post(
            f"/api/threads/{thread_id}/runs", json={"message": "too late"}
        )
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "shutting_down"
        assert await row_counts(store) == before


async def test_a_producer_whose_lease_is_taken_stops_reading_and_writes_nothing_more(
    settings: Settings, store: Store
) -> None:
    gate = Gate()
    tail: list[Step] = []
    for i in range(50):
        tail += [text(f"late {i}"), Pause(0.02)]
    async with broker_and_agent(settings, store) as stack:
        stack.fake.script("taken", text("a"), text("b"), gate, *tail, complete("never"))
        run_id = (await stack.start_run(await stack.new_thread(), "taken"))["run_id"]
        await gate.reached.wait()
        stream = stack.app.state.streams.get(RunId(uuid.UUID(run_id)))
        assert await stream.wait_stored(3)
        (producer,) = [t for t in _write_side_tasks() if t.get_name() == f"producer:{run_id}"]

        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE runs SET writer_id = 'replica-b' WHERE id = :id"),
                {"id": stream.run_id},
            )
        gate.open()
        assert await stack.finished(run_id) == "lease_lost"
        await asyncio.wait_for(producer, 5)  # the producer task ended on its own
        await asyncio.wait_for(stack.fake.streams_done["taken"].wait(), 5)
        received = stack.metric("broker_events_received_total")
        assert received < 20, "the producer kept reading after losing its lease"
        assert stack.metric("broker_active_producers") == 0
        assert run_id not in stack.fake.cancelled  # the new owner may be re-attaching

    assert [e.seq for e in await stack.events(run_id)] == [1, 2, 3]
    row = await stack.run_row(run_id)
    assert (row.writer_id, row.status, row.last_seq) == ("replica-b", "streaming", 3)
