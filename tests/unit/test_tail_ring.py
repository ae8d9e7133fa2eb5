"""A viewer joining a live run catches up from the tail's recent frames, not the table.

The in-memory store and the hub of `test_hub`; reads of the table are counted
by `broker_catchup_reads_total`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from broker.store.memory import MemoryStore
from broker.web.metrics import Metrics
from models.events import StoredEvent, Text, TextData
from models.ids import RunId, new_id
from subscribe.hub import Hub
from subscribe.subscription import live_batches
from subscribe.tail import RING_FRAMES, Tail
from subscribe.viewer import Frame, frame_of
from tests.unit.test_hub import count, flush, hub, memory, metrics, new_run, text, turns

__all__ = ["hub", "memory", "metrics"]  # the fixtures of test_hub


async def take(batches: AsyncGenerator[list[Frame] | None, None], upto: int) -> list[int]:
    """Frames' seqs through `upto` (a batch at a time)."""
    got: list[int] = []
    while not got or got[-1] < upto:
        batch = await anext(batches)
        assert batch is not None
        got += [frame.seq for frame in batch]
    return got


async def test_a_joining_viewer_catches_up_from_the_ring_without_a_table_read(
    hub: Hub, memory: MemoryStore, metrics: Metrics
) -> None:
    run = await new_run(memory)
    first = hub.join(run.run_id, 1)  # the tail exists from head 1
    await hub.sweep()
    await flush(memory, run, *[(seq, text(f"t{seq}")) for seq in range(2, 7)])
    await turns(lambda: hub.tail_head(run.run_id) == 6, "the tail publishes 2..6")
    state = await memory.get_run_state(run.workspace_id, run.run_id)

    reads = count(metrics, "broker_catchup_reads_total")
    late = live_batches(hub, memory, metrics, state, 3, idle_s=60)
    assert await take(late, 6) == [4, 5, 6]
    assert count(metrics, "broker_catchup_reads_total") == reads  # no table read

    # Seq 1 was never published here: a cursor before the ring reads the table.
    early = live_batches(hub, memory, metrics, state, 0, idle_s=60)
    assert await take(early, 6) == [1, 2, 3, 4, 5, 6]
    assert count(metrics, "broker_catchup_reads_total") == reads + 1

    await flush(memory, run, (7, text("live")))
    assert await take(late, 7) == [7]
    assert await take(early, 7) == [7]
    await late.aclose()
    await early.aclose()
    hub.leave(first)


def test_the_ring_keeps_the_newest_frames_within_its_bounds() -> None:
    tail = Tail(RunId(new_id()), 0)
    ts = datetime.now(UTC)
    events = [
        StoredEvent(seq=seq, ts=ts, event=Text(data=TextData(text="x")))
        for seq in range(1, RING_FRAMES + 11)
    ]
    tail.publish(events)
    assert tail.recent(0) is None  # seq 1..10 fell out
    assert tail.recent(9) is None
    recent = tail.recent(10)
    assert recent is not None and [f.seq for f in recent] == list(range(11, RING_FRAMES + 11))
    assert tail.recent(RING_FRAMES + 10) == []
    big = StoredEvent(seq=RING_FRAMES + 11, ts=ts, event=Text(data=TextData(text="y" * 2**21)))
    tail.publish([big])  # larger than the byte bound alone: kept alone
    assert [f.seq for f in tail.recent(RING_FRAMES + 10) or []] == [RING_FRAMES + 11]
    assert tail.recent(RING_FRAMES + 9) is None


def test_frames_a_viewer_read_from_the_table_seed_the_ring_in_front_when_they_fit() -> None:
    ts = datetime.now(UTC)

    def frames(first: int, last: int) -> list[Frame]:
        return [
            frame_of(StoredEvent(seq=s, ts=ts, event=text(f"t{s}"))) for s in range(first, last + 1)
        ]

    tail = Tail(RunId(new_id()), head=10)
    tail.publish([StoredEvent(seq=s, ts=ts, event=text(f"t{s}")) for s in (11, 12)])
    assert tail.recent(0) is None  # 1..10 were never published here
    tail.seed(frames(1, 5))  # does not reach the ring: a gap would follow
    assert tail.recent(0) is None
    tail.seed(frames(1, 12))  # overlaps the ring: only 1..10 go in front
    assert [f.seq for f in tail.recent(0) or []] == list(range(1, 13))
    tail.publish([StoredEvent(seq=13, ts=ts, event=text("t13"))])
    assert [f.seq for f in tail.recent(11) or []] == [12, 13]

    full = Tail(RunId(new_id()), head=RING_FRAMES + 5)
    full.seed(frames(1, RING_FRAMES + 5))  # an empty ring takes the newest that fit
    kept = full.recent(5)
    assert kept is not None and [f.seq for f in kept] == list(range(6, RING_FRAMES + 6))
