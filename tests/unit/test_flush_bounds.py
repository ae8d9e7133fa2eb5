"""A flush never carries more than its event and byte bounds (the in-memory store, no sleeps).

The store records every `flush_runs` call; a backlog must go out in several
bounded flushes, in seq order, with the agent's cursor of the last event of
each flush, and a single event larger than the byte bound goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from broker.store.memory import MemoryStore
from broker.store.records import PendingEvent, RunFlush
from broker.web.metrics import Metrics
from broker.write.batching import Backoff, take_counts
from broker.write.streams import StreamManager
from models.events import ChatMessage, Complete, CompleteData, Text, TextData
from models.ids import RunId


class RecordingStore(MemoryStore):
    """The in-memory store, remembering each flush's events and the cursors it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[list[PendingEvent]] = []
        self.cursors: list[dict[RunId, str | None]] = []

    async def flush_runs(
        self,
        writer_id: str,
        lease_s: float,
        runs: Sequence[RunFlush],
        events: Sequence[PendingEvent],
    ) -> set[RunId]:
        if events:
            self.flushes.append(list(events))
            self.cursors.append({r.run_id: r.agent_event_id for r in runs if r.last_seq})
        return await super().flush_runs(writer_id, lease_s, runs, events)


def text(size: int) -> Text:
    return Text(data=TextData(text="x" * size))


async def open_run(store: MemoryStore, name: str) -> tuple[RunId, object]:
    workspace = await store.ensure_workspace(name)
    thread = await store.create_thread(workspace, None)
    run = await store.create_run(
        thread, writer_id="w1", lease_s=9.0, message=ChatMessage(role="user", content="q")
    )
    return run.run_id, run.thread_id


def manager_on(store: MemoryStore, **bounds: int) -> StreamManager:
    return StreamManager(
        store,
        writer_id="w1",
        lease_s=9.0,
        flush_interval_s=3600.0,  # a backlog must drain at once all the same
        run_buffer_max=10_000,
        metrics=Metrics(),
        backoff=Backoff(base=0.0, cap=0.0),
        **bounds,
    )


async def test_a_backlog_goes_out_in_flushes_within_the_event_and_byte_bounds() -> None:
    store = RecordingStore()
    manager = manager_on(store, flush_max_events=7, flush_max_bytes=2_000)
    runs = [await open_run(store, f"w{i}") for i in range(3)]
    streams = [manager.open(run_id, thread_id) for run_id, thread_id in runs]  # type: ignore[arg-type]
    sizes = [10, 300, 50, 900, 5, 700, 120]
    for i in range(60):  # buffered before the loop starts: one backlog of 63 events
        streams[i % 3].push(text(sizes[i % len(sizes)]), agent_event_id=f"a{i}")
    for stream in streams:
        stream.push(Complete(data=CompleteData(new_messages=[])), agent_event_id="end")
    manager.start()
    for stream in streams:
        assert await stream.wait_closed() == "stored"
    await manager.close()

    assert len(store.flushes) > 1
    for flush in store.flushes:
        assert 1 <= len(flush) <= 7
        assert sum(item.size for item in flush) <= 2_000
    assert sum(len(flush) for flush in store.flushes) == 63
    for run_id, _ in runs:
        seqs = [e.seq for flush in store.flushes for e in flush if e.run_id == run_id]
        assert seqs == list(range(2, 23))  # every event once, in order
        stored = await store.read_events(run_id, 0)
        assert [e.seq for e in stored] == list(range(1, 23))
    # Each flush moved a run's cursor to the agent id of that run's last event in it.
    for flush, cursors in zip(store.flushes, store.cursors, strict=True):
        for run_id, cursor in cursors.items():
            assert cursor == [e for e in flush if e.run_id == run_id][-1].agent_event_id


async def test_an_event_larger_than_the_byte_bound_is_flushed_alone() -> None:
    store = RecordingStore()
    manager = manager_on(store, flush_max_events=100, flush_max_bytes=1_000)
    run_id, thread_id = await open_run(store, "big")
    stream = manager.open(run_id, thread_id)  # type: ignore[arg-type]
    for size in (10, 5_000, 10, 10):
        stream.push(text(size))
    manager.start()
    assert await stream.wait_stored(5)
    await manager.close()
    assert [[e.seq for e in flush] for flush in store.flushes] == [[2], [3], [4, 5]]
    assert store.flushes[1][0].size > 1_000


async def test_shutdown_flushes_a_whole_backlog_through_the_bounds() -> None:
    store = RecordingStore()
    manager = manager_on(store, flush_max_events=3, flush_max_bytes=10_000)
    run_id, thread_id = await open_run(store, "bye")
    stream = manager.open(run_id, thread_id)  # type: ignore[arg-type]
    for _ in range(10):
        stream.push(text(10))
    await manager.close()  # the loop never ran: close alone drains the backlog
    assert [len(flush) for flush in store.flushes] == [3, 3, 3, 1]
    assert [e.seq for e in await store.read_events(run_id, 0)] == list(range(1, 12))


@pytest.mark.parametrize("bounds", [{"flush_max_events": 0}, {"flush_max_bytes": 0}])
def test_flush_bounds_must_be_positive(bounds: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        manager_on(MemoryStore(), **bounds)


class _Sized:
    def __init__(self, size: int) -> None:
        self.size = size


def _sized(*sizes: int) -> list[_Sized]:
    return [_Sized(size) for size in sizes]


@pytest.mark.parametrize(
    ("pending", "max_events", "max_bytes", "counts"),
    [
        ({"a": _sized(1, 1), "b": _sized(1)}, 10, 100, {"a": 2, "b": 1}),  # all of it
        ({"a": _sized(1, 1, 1), "b": _sized(1)}, 2, 100, {"a": 2}),  # cut by events
        ({"a": _sized(5, 5), "b": _sized(1)}, 10, 7, {"a": 1}),  # cut by bytes
        ({"a": _sized(5), "b": _sized(5)}, 10, 7, {"a": 1, "b": 0}),  # b reached, none fits
        ({"a": _sized(50), "b": _sized(1)}, 10, 7, {"a": 1, "b": 0}),  # one, however large
        ({"a": _sized(1, 1), "b": _sized(1, 1)}, 2, 100, {"a": 2}),  # b not reached
    ],
)
def test_take_counts_stops_at_the_first_bound_and_takes_one_event_at_least(
    pending: dict[str, list[_Sized]], max_events: int, max_bytes: int, counts: dict[str, int]
) -> None:
    assert take_counts(pending, max_events=max_events, max_bytes=max_bytes) == counts
