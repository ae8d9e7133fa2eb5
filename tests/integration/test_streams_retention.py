"""Retention on a real database: raw events of finished runs go, runs in flight keep theirs."""

from __future__ import annotations

import asyncio

from broker.store.postgres import Store
from broker.write.retention import Retention, sweep_interval
from models.events import ChatMessage, Complete, CompleteData
from tests.integration.streams_helpers import manager, open_runs, run_row, stored, text


async def test_retention_deletes_only_the_raw_events_of_finished_runs(store: Store) -> None:
    answer = [ChatMessage(role="assistant", content="done")]
    async with manager(store) as streams:
        finished, running = await open_runs(store, streams, 2)
        finished.push(text("a"))
        finished.push(Complete(data=CompleteData(new_messages=answer)))
        assert await finished.wait_closed() == "stored"
        assert await running.wait_stored(running.push(text("b")) or 0)

        assert await Retention(store, retention_s=3600).sweep() == 0  # not old enough yet
        assert await Retention(store, retention_s=0).sweep() == 3

        assert await stored(store, finished) == []
        assert [e.seq for e in await stored(store, running)] == [1, 2]
    # The final state outlives the raw events.
    assert (await run_row(store, finished)).status == "completed"
    assert [m.message for m in await store.list_messages(finished.thread_id)] == answer


async def test_the_periodic_sweep_runs_until_closed(store: Store) -> None:
    async with manager(store) as streams:
        (run,) = await open_runs(store, streams)
        run.push(Complete(data=CompleteData(new_messages=[])))
        assert await run.wait_closed() == "stored"
    retention = Retention(store, retention_s=0, every_s=0.02)
    retention.start()
    try:
        await asyncio.wait_for(retention.swept.wait(), 10)
        assert retention.deleted == 2
    finally:
        await retention.close()
    assert await stored(store, run) == []
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "retention"]


def test_sweeps_come_at_a_tenth_of_the_retention_within_bounds() -> None:
    assert sweep_interval(3600) == 300
    assert sweep_interval(600) == 60
    assert sweep_interval(0) == 1
