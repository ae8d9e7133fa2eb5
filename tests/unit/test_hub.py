"""The hub, its tails and its listener on the in-memory store: no database, no sleeps.

The poll interval is an hour, so nothing here is delivered by the clock: a
row reaches a viewer through a wake-up (the twin's NOTIFY), the join's first
read, or an explicit sweep. Waits are bounded by loop turns, not seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from broker.store.memory import MemoryStore
from broker.store.records import PendingEvent, RunFlush, RunRecord
from broker.web.metrics import Metrics
from models.events import Complete, CompleteData, StreamEvent, Text, TextData
from models.ids import RunId
from subscribe.hub import Hub
from subscribe.viewer import Viewer


async def turns(predicate: Callable[[], bool], what: str, limit: int = 10_000) -> None:
    """Let the loop run until `predicate` holds, or fail naming it (no wall clock involved)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def seqs(viewer: Viewer) -> list[int]:
    return [frame.seq for frame in viewer.take()[0]]


def count(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


@pytest.fixture
def memory() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def hub(memory: MemoryStore, metrics: Metrics) -> AsyncIterator[Hub]:
    hub = Hub(memory, metrics, poll_interval_s=3600, viewer_queue_max=100, listen_retry_s=(0, 0))
    async with hub:
        assert hub.listener is not None
        listener = hub.listener
        await turns(lambda: listener.connected, "the listener connects")
        yield hub


async def new_run(memory: MemoryStore, workspace: str = "acme") -> RunRecord:
    workspace_id = await memory.ensure_workspace(workspace)
    thread = await memory.create_thread(workspace_id, None)
    return await memory.create_run(thread, writer_id="w1", lease_s=60)


async def flush(memory: MemoryStore, run: RunRecord, *events: tuple[int, StreamEvent]) -> None:
    pending = [PendingEvent(run.run_id, seq, event, datetime.now(UTC)) for seq, event in events]
    last = max(seq for seq, _ in events)
    assert await memory.flush_runs("w1", 60, [RunFlush(run.run_id, run.thread_id, last)], pending)


def text(value: str) -> Text:
    return Text(data=TextData(text=value))


async def test_a_wake_up_delivers_new_rows_to_every_viewer_of_the_run(
    hub: Hub, memory: MemoryStore, metrics: Metrics
) -> None:
    run = await new_run(memory)
    first, second = hub.join(run.run_id, 1), hub.join(run.run_id, 1)
    await hub.sweep()  # settle: the join's first read is behind us
    await flush(memory, run, (2, text("a")), (3, text("b")))
    await turns(lambda: count(metrics, "broker_notifications_total") == 1, "one wake-up")
    await turns(lambda: len(first) == 2 and len(second) == 2, "both viewers get seq 2..3")
    assert seqs(first) == seqs(second) == [2, 3]
    assert hub.tail_head(run.run_id) == 3


async def test_the_terminal_row_finishes_the_tail_and_a_late_viewer_still_gets_it(
    hub: Hub, memory: MemoryStore
) -> None:
    run = await new_run(memory)
    early = hub.join(run.run_id, 1)
    await flush(memory, run, (2, Complete(data=CompleteData(new_messages=[]))))
    await turns(lambda: len(early) == 1, "the terminal frame")
    late = hub.join(run.run_id, 2)
    (frame,), _ = late.take()
    assert frame.terminal and frame.seq == 2


async def test_rows_committed_before_the_join_are_read_once_at_join(
    hub: Hub, memory: MemoryStore
) -> None:
    run = await new_run(memory)
    await flush(memory, run, (2, text("before the tail existed")))
    viewer = hub.join(run.run_id, 1)
    await turns(lambda: len(viewer) == 1, "the join's first read")
    assert seqs(viewer) == [2]


async def test_a_sweep_reads_every_tail_in_one_call_and_finds_rows_whose_wake_up_was_lost(
    hub: Hub, memory: MemoryStore, metrics: Metrics
) -> None:
    runs = [await new_run(memory, f"w{i}") for i in range(20)]
    viewers = [hub.join(run.run_id, 1) for run in runs]
    await hub.sweep()
    now = datetime.now(UTC)
    memory.insert_silently([PendingEvent(run.run_id, 2, text("quiet"), now) for run in runs])
    before = count(metrics, "broker_tail_reads_total")
    await hub.sweep()
    assert count(metrics, "broker_tail_reads_total") - before == 1
    assert all(seqs(viewer) == [2] for viewer in viewers)


async def test_a_malformed_wake_up_is_counted_and_dropped(
    hub: Hub, memory: MemoryStore, metrics: Metrics
) -> None:
    run = await new_run(memory)
    viewer = hub.join(run.run_id, 1)
    await hub.sweep()
    reads = count(metrics, "broker_tail_reads_total")
    memory.send_wake_up("not-a-run:xx")
    memory.send_wake_up(f"{run.run_id}:1")  # not past the head: nothing to read
    await turns(lambda: count(metrics, "broker_notifications_total") == 2, "both wake-ups")
    assert count(metrics, "broker_tail_reads_total") == reads
    assert seqs(viewer) == []


async def test_the_listener_reconnects_after_the_connection_drops(
    hub: Hub, memory: MemoryStore
) -> None:
    assert hub.listener is not None
    listener = hub.listener
    memory.drop_listeners()
    await turns(lambda: listener.connects == 2 and listener.connected, "a second connection")
    run = await new_run(memory)
    viewer = hub.join(run.run_id, 1)
    await hub.sweep()
    await flush(memory, run, (2, text("after the reconnect")))
    await turns(lambda: len(viewer) == 1, "delivery through the new connection")


async def test_the_last_viewer_out_removes_the_tail(hub: Hub, memory: MemoryStore) -> None:
    run = await new_run(memory)
    a, b = hub.join(run.run_id, 1), hub.join(run.run_id, 1)
    assert (hub.tail_count, hub.viewer_count) == (1, 2)
    hub.leave(a)
    hub.leave(a)  # twice is harmless
    assert (hub.tail_count, hub.viewer_count) == (1, 1)
    hub.leave(b)
    assert (hub.tail_count, hub.viewer_count) == (0, 0)
    assert hub.tail_head(run.run_id) is None


async def test_cancel_wake_ups_are_handed_to_the_write_side_and_malformed_ones_dropped(
    memory: MemoryStore, metrics: Metrics
) -> None:
    told: list[tuple[RunId, str]] = []
    hub = Hub(
        memory,
        metrics,
        poll_interval_s=3600,
        viewer_queue_max=100,
        listen_retry_s=(0, 0),
        on_cancel=lambda run_id, by: told.append((run_id, by)),
    )
    async with hub:
        assert hub.listener is not None
        listener = hub.listener
        await turns(lambda: listener.connected, "the listener connects")
        run = await new_run(memory)
        await memory.request_cancel(run.workspace_id, run.run_id, "alice")
        await turns(lambda: told == [(run.run_id, "alice")], "the cancel reaches the hook")
        memory.send_wake_up("not-a-run:bob", cancel=True)
        await memory.request_cancel(run.workspace_id, run.run_id, "bob")
        await turns(lambda: len(told) == 2, "the second request's wake-up")
    # The member whose request won is named each time; the malformed one was dropped.
    assert told == [(run.run_id, "alice")] * 2
