"""The stream manager and its flush loop on the in-memory store: no database, no sleeps.

Time is a fake clock the test moves; the loop runs with a zero flush interval
(group commit), so every wake-up flushes at once and a test waits only for
the manager's own signals (`wait_stored`, `wait_closed`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from broker.store.memory import MemoryStore
from broker.store.records import RunRecord
from broker.web.metrics import Metrics
from broker.write.batching import Backoff
from broker.write.streams import StreamManager
from models.events import ChatMessage, Complete, CompleteData, ErrorEvent, Text, TextData


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    """The store's `now()`, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def text(value: str) -> Text:
    return Text(data=TextData(text=value))


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def memory(wall: WallClock) -> MemoryStore:
    return MemoryStore(clock=wall)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def manager_on(store: MemoryStore, clock: Clock, **options: object) -> StreamManager:
    settings: dict[str, object] = {
        "writer_id": "w1",
        "lease_s": 9.0,
        "flush_interval_s": 0.0,
        "run_buffer_max": 100,
        "metrics": Metrics(),
        "backoff": Backoff(base=0.0, cap=0.0),
        "clock": clock,
    }
    settings.update(options)
    return StreamManager(store, **settings)  # type: ignore[arg-type]


async def new_run(store: MemoryStore, workspace: str = "acme") -> RunRecord:
    workspace_id = await store.ensure_workspace(workspace)
    thread = await store.create_thread(workspace_id, None)
    return await store.create_run(
        thread, writer_id="w1", lease_s=9.0, message=ChatMessage(role="user", content="q")
    )


async def test_events_are_stored_in_push_order_and_the_terminal_one_ends_the_run(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)
    manager.start()
    stream = manager.open(run.run_id, run.thread_id)
    seqs = [stream.push(text(str(i)), agent_event_id=f"a{i}") for i in range(5)]
    assert seqs == [2, 3, 4, 5, 6]
    answer = ChatMessage(role="assistant", content="done")
    last = stream.push(Complete(data=CompleteData(new_messages=[answer])), agent_event_id="a5")
    assert last == 7
    assert await stream.wait_closed() == "stored"
    assert stream.push(text("late")) is None
    stored = await memory.read_events(run.run_id, 0)
    assert [e.seq for e in stored] == list(range(1, 8))
    record = await memory.get_run(run.workspace_id, run.run_id)
    assert (record.status, record.last_seq, record.agent_event_id, record.writer_id) == (
        "completed",
        7,
        "a5",
        None,
    )
    assert [m.message.content for m in await memory.list_messages(run.thread_id)] == ["q", "done"]
    await manager.close()


async def test_a_failed_flush_is_retried_and_stores_every_event_once(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)
    stream = manager.open(run.run_id, run.thread_id)
    for i in range(3):
        stream.push(text(str(i)))
    memory.fail_next = 2  # the first two flushes meet an outage
    manager.start()
    stream.push(text("after"))
    assert await stream.wait_stored(5)
    assert [e.seq for e in await memory.read_events(run.run_id, 0)] == [1, 2, 3, 4, 5]
    assert memory.fail_next == 0
    await manager.close()


async def test_a_run_claimed_by_another_writer_is_fenced_out_without_a_row(
    memory: MemoryStore, clock: Clock, wall: WallClock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)
    manager.start()
    stream = manager.open(run.run_id, run.thread_id)
    assert await stream.wait_stored(stream.push(text("mine")) or 0)
    await memory.release_runs("w1", [run.run_id])  # as if the lease had run out
    assert [r.run_id for r in await memory.claim_expired_runs("w2", 9.0, 1)] == [run.run_id]
    assert stream.push(text("too late")) == 3
    assert await stream.wait_closed() == "lease_lost"
    assert stream.halted.is_set() and stream.halt_reason == "lease_lost"
    assert [e.seq for e in await memory.read_events(run.run_id, 0)] == [1, 2]
    await manager.close()


async def test_an_idle_runs_lease_is_renewed_by_another_runs_flush(
    memory: MemoryStore, clock: Clock, wall: WallClock
) -> None:
    idle, busy = await new_run(memory), await new_run(memory, "other")
    manager = manager_on(memory, clock)
    manager.start()
    manager.open(idle.run_id, idle.thread_id)
    busy_stream = manager.open(busy.run_id, busy.thread_id)
    clock.now += 2.0  # past half the renewal period (9 s / 3 / 2)
    wall.advance(8)  # one second before both leases would expire
    assert await busy_stream.wait_stored(busy_stream.push(text("x")) or 0)
    wall.advance(4)  # past the original expiry, inside the renewed one
    assert await memory.claim_expired_runs("w2", 9.0, 10) == []
    await manager.close()


async def test_a_run_over_its_buffer_cap_ends_with_one_overflow_error(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock, run_buffer_max=3)  # loop not started: nothing flushes
    stream = manager.open(run.run_id, run.thread_id)
    assert [stream.push(text(str(i))) for i in range(3)] == [2, 3, 4]
    assert stream.push(text("over")) is None
    assert stream.halt_reason == "buffer_overflow"
    assert stream.push(text("more")) is None
    manager.start()
    assert await stream.wait_closed() == "stored"
    stored = await memory.read_events(run.run_id, 0)
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert isinstance(stored[-1].event, ErrorEvent)
    assert stored[-1].event.data.error_type == "buffer_overflow"
    assert (await memory.get_run(run.workspace_id, run.run_id)).status == "failed"
    await manager.close()


async def test_close_flushes_what_is_pending_and_hands_open_runs_over(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock, flush_interval_s=3600.0)
    manager.start()
    stream = manager.open(run.run_id, run.thread_id)
    assert await stream.wait_stored(stream.push(text("first"), agent_event_id="a1") or 0)
    stream.push(text("held back by the interval"), agent_event_id="a2")
    await manager.close()
    assert await stream.wait_closed() == "released"
    record = await memory.get_run(run.workspace_id, run.run_id)
    assert (record.status, record.writer_id, record.agent_event_id) == ("streaming", None, "a2")
    assert [e.seq for e in await memory.read_events(run.run_id, 0)] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        manager.open(run.run_id, run.thread_id)


async def test_events_that_cannot_be_stored_at_shutdown_are_reported_abandoned(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)
    stream = manager.open(run.run_id, run.thread_id)
    stream.push(text("never stored"))
    memory.fail_next = 10  # every flush try at shutdown and the release fail
    await manager.close(flush_attempts=2)
    assert await stream.wait_closed() == "abandoned"
    memory.fail_next = 0
    assert [e.seq for e in await memory.read_events(run.run_id, 0)] == [1]


async def test_a_flush_tells_the_stream_of_a_cancel_whose_wake_up_was_lost(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)
    manager.start()
    stream = manager.open(run.run_id, run.thread_id)
    assert await stream.wait_stored(stream.push(text("Hel")) or 0)
    # No listener: the cancel's wake-up reaches nobody; the flag is in the store.
    await memory.request_cancel(run.workspace_id, run.run_id, "alice")
    assert not stream.cancel_requested.is_set()
    assert await stream.wait_stored(stream.push(text("lo")) or 0)
    assert stream.cancel_requested.is_set() and stream.cancel_by == "alice"
    # The producer's end: `cancelled`, the partial answer kept in the same flush.
    seq = stream.cancel(stream.cancel_by, [ChatMessage(role="assistant", content="Hello")])
    assert seq == 4 and await stream.wait_closed() == "stored"
    record = await memory.get_run(run.workspace_id, run.run_id)
    assert (record.status, record.aborted_by, record.writer_id) == ("cancelled", "alice", None)
    assert [m.message.content for m in await memory.list_messages(run.thread_id)] == ["q", "Hello"]
    assert stream.answer == ["Hel", "lo"]
    await manager.close()


async def test_a_cancel_wake_up_reaches_only_a_stream_this_process_writes(
    memory: MemoryStore, clock: Clock
) -> None:
    run, other = await new_run(memory), await new_run(memory, "other")
    manager = manager_on(memory, clock)
    stream = manager.open(run.run_id, run.thread_id)
    manager.request_cancel(other.run_id, "bob")  # not written here: nothing to tell
    assert not stream.cancel_requested.is_set()
    manager.request_cancel(run.run_id, "alice")
    manager.request_cancel(run.run_id, "bob")
    assert stream.cancel_requested.is_set() and stream.cancel_by == "alice"
    await manager.close()


async def test_on_stored_hears_each_run_s_events_once_committed_and_never_a_fenced_run_s(
    memory: MemoryStore, clock: Clock
) -> None:
    mine, lost = await new_run(memory), await new_run(memory, "other")
    manager = manager_on(memory, clock)
    heard: list[tuple[object, list[int], list[int]]] = []

    def on_stored(run_id: object, events: object) -> None:
        seqs = [e.seq for e in events]  # type: ignore[attr-defined]
        # Told after the commit: every event it names is in the table already.
        stored = list(memory._runs[run_id].events)  # type: ignore[index]
        heard.append((run_id, seqs, stored))

    manager.on_stored = on_stored
    manager.start()
    stream = manager.open(mine.run_id, mine.thread_id)
    other = manager.open(lost.run_id, lost.thread_id)
    for i in range(3):
        stream.push(text(str(i)))
    assert await stream.wait_stored(4)
    await memory.release_runs("w1", [lost.run_id])
    await memory.claim_expired_runs("w2", 9.0, 1)
    other.push(text("fenced"))
    assert await other.wait_closed() == "lease_lost"
    told = [seq for run_id, seqs, _ in heard if run_id == mine.run_id for seq in seqs]
    assert told == [2, 3, 4]
    assert all(set(seqs) <= set(stored) for _, seqs, stored in heard)
    assert all(run_id != lost.run_id for run_id, _, _ in heard)
    await manager.close()


async def test_a_failing_on_stored_costs_nothing_but_the_wake_up(
    memory: MemoryStore, clock: Clock
) -> None:
    run = await new_run(memory)
    manager = manager_on(memory, clock)

    def broken(run_id: object, events: object) -> None:
        raise RuntimeError("a bug in a listener")

    manager.on_stored = broken
    manager.start()
    stream = manager.open(run.run_id, run.thread_id)
    assert await stream.wait_stored(stream.push(text("a")) or 0)
    assert await stream.wait_stored(stream.push(text("b")) or 0)
    assert [e.seq for e in await memory.read_events(run.run_id, 0)] == [1, 2, 3]
    await manager.close()


async def test_the_backlog_of_all_runs_says_when_producers_must_wait_and_a_flush_makes_room(
    memory: MemoryStore, clock: Clock
) -> None:
    one, two = await new_run(memory), await new_run(memory, "other")
    manager = manager_on(memory, clock, backlog_max=4)
    first = manager.open(one.run_id, one.thread_id)
    second = manager.open(two.run_id, two.thread_id)
    for i in range(2):
        first.push(text(f"a{i}"))
        second.push(text(f"b{i}"))
    assert manager.backlogged  # 4 events not yet stored, two runs together
    waiting = asyncio.create_task(manager.until_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    manager.start()  # the loop flushes them
    await asyncio.wait_for(waiting, 5)
    assert not manager.backlogged
    assert [e.seq for e in await memory.read_events(one.run_id, 0)] == [1, 2, 3]
    # The gauge says what is still unstored once the flush has settled: nothing.
    assert manager._metrics.registry.get_sample_value("broker_buffered_events") == 0
    await manager.close()
