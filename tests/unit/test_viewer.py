"""The delivery-by-seq rule, the bounded queue and the hand-over, against an in-memory table."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import random
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import pytest

from models.events import Complete, CompleteData, StoredEvent, Text, TextData
from models.ids import RunId
from subscribe.errors import StreamBroken
from subscribe.tail import Tail
from subscribe.viewer import (
    Disposition,
    Frame,
    Viewer,
    classify,
    follow,
    follow_batches,
    frame_of,
)

RUN = RunId(uuid.uuid4())
TS = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def stored(seq: int, *, terminal: bool = False) -> StoredEvent:
    if terminal:
        return StoredEvent(seq=seq, ts=TS, event=Complete(data=CompleteData(new_messages=[])))
    return StoredEvent(seq=seq, ts=TS, event=Text(data=TextData(text=f"t{seq}")))


class Table:
    """The run's rows: a contiguous prefix 1..N, as PostgreSQL keeps it."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.events: list[StoredEvent] = []
        self.reads = 0
        self._rng = rng

    def append(self, count: int, *, terminal: bool = False) -> list[StoredEvent]:
        start = len(self.events) + 1
        new = [stored(seq) for seq in range(start, start + count)]
        if terminal:
            new.append(stored(start + count, terminal=True))
        self.events.extend(new)
        return new

    async def read_after(self, last: int, limit: int) -> list[Frame]:
        self.reads += 1
        rows = [frame_of(e) for e in self.events if e.seq > last][:limit]
        for _ in range(self._rng.randint(0, 3) if self._rng else 1):
            await asyncio.sleep(0)  # a read takes time: the world moves on meanwhile
        return rows


async def seqs(items: AsyncGenerator[Frame | None, None]) -> list[int]:
    async with asyncio.timeout(10):
        return [frame.seq async for frame in items if frame is not None]


def test_the_rule_delivers_next_drops_old_and_flags_gaps() -> None:
    assert classify(4, 5) is Disposition.DELIVER
    assert classify(4, 4) is Disposition.DUPLICATE
    assert classify(4, 1) is Disposition.DUPLICATE
    assert classify(4, 6) is Disposition.GAP
    assert classify(0, 1) is Disposition.DELIVER


def test_frames_are_encoded_once_as_sse_and_ndjson() -> None:
    frame = frame_of(stored(17))
    assert frame.sse.startswith(b"id: 17\ndata: {")
    assert frame.sse.endswith(b"\n\n")
    assert frame.ndjson == (frame.json + "\n").encode()
    assert '"seq":17' in frame.json
    assert not frame.terminal
    assert frame_of(stored(3, terminal=True)).terminal


async def test_a_full_queue_is_dropped_and_the_viewer_cut_loose() -> None:
    viewer = Viewer(RUN, maxsize=3)
    viewer.offer([frame_of(stored(1)), frame_of(stored(2))])
    assert len(viewer) == 2
    viewer.offer([frame_of(stored(3)), frame_of(stored(4))])
    assert len(viewer) == 0 and viewer.overflowed
    viewer.offer([frame_of(stored(5))])  # ignored until the viewer has re-read the table
    frames, overflowed = viewer.take()
    assert frames == [] and overflowed
    assert not viewer.overflowed and not await viewer.wait(0.01)


async def test_wait_times_out_when_idle_and_wakes_on_offer_or_close() -> None:
    viewer = Viewer(RUN, maxsize=10)
    assert not await viewer.wait(0.01)
    viewer.offer([frame_of(stored(1))])
    assert await viewer.wait(0.01)
    assert [f.seq for f in viewer.take()[0]] == [1]
    viewer.close()
    assert await viewer.wait(0.01)
    viewer.offer([frame_of(stored(2))])
    assert len(viewer) == 0


async def test_catch_up_alone_reaches_the_terminal_event() -> None:
    table = Table()
    table.append(1200, terminal=True)
    viewer = Viewer(RUN, maxsize=10)
    got = await seqs(follow(viewer, 0, table.read_after, idle_s=5, limit=500))
    assert got == list(range(1, 1202))
    assert table.reads == 3  # batches of 500: bounded memory, not one huge read


async def test_rows_published_before_the_catch_up_read_are_delivered_once() -> None:
    table = Table()
    table.append(3)
    tail = Tail(RUN, head=3)
    viewer = Viewer(RUN, maxsize=100)
    tail.viewers.add(viewer)

    async def hook(stage: str) -> None:
        if stage == "registered":
            # Between registering and the catch-up read: in the queue AND in the table.
            tail.publish(table.append(3))
        if stage == "caught_up":
            # After the catch-up read: only the queue has them.
            tail.publish(table.append(2, terminal=True))

    got = await seqs(follow(viewer, 1, table.read_after, idle_s=5, hook=hook))
    assert got == list(range(2, 10))


async def test_a_gap_in_the_queue_is_filled_from_the_table_first() -> None:
    table = Table()
    table.append(9, terminal=True)
    viewer = Viewer(RUN, maxsize=100)
    delivered: list[int] = []

    async def hook(stage: str) -> None:
        if stage == "registered":
            table.events = table.events[:5]  # the catch-up read sees 1..5 only
        if stage == "caught_up":
            table.events = [stored(s) for s in range(1, 10)] + [stored(10, terminal=True)]
            viewer.offer([frame_of(table.events[s - 1]) for s in (8, 9, 10)])

    async with asyncio.timeout(10):
        async for frame in follow(viewer, 0, table.read_after, idle_s=5, hook=hook):
            assert frame is not None
            delivered.append(frame.seq)
    assert delivered == list(range(1, 11))


async def test_an_overflowed_viewer_re_reads_the_table_and_skips_nothing() -> None:
    table = Table()
    tail = Tail(RUN, head=0)
    viewer = Viewer(RUN, maxsize=2)
    tail.viewers.add(viewer)

    async def hook(stage: str) -> None:
        if stage == "caught_up":
            for _ in range(5):
                tail.publish(table.append(3))  # three at a time into a queue of two
            tail.publish(table.append(0, terminal=True))

    assert await seqs(follow(viewer, 0, table.read_after, idle_s=5, hook=hook)) == list(
        range(1, 17)
    )


async def test_silence_yields_a_keepalive_tick() -> None:
    table = Table()
    viewer = Viewer(RUN, maxsize=10)
    items = follow(viewer, 0, table.read_after, idle_s=0.01)
    assert await anext(items) is None
    await items.aclose()


async def test_a_closed_viewer_ends_its_stream() -> None:
    table = Table()
    table.append(2)
    viewer = Viewer(RUN, maxsize=10)
    viewer.close()
    assert await seqs(follow(viewer, 0, table.read_after, idle_s=5)) == [1, 2]


async def test_rows_missing_from_the_table_break_the_stream_instead_of_skipping() -> None:
    table = Table()
    table.append(3)
    viewer = Viewer(RUN, maxsize=10)

    async def hook(stage: str) -> None:
        if stage == "caught_up":
            viewer.offer([frame_of(stored(6))])  # 4 and 5 are nowhere

    with pytest.raises(StreamBroken):
        await seqs(follow(viewer, 0, table.read_after, idle_s=5, hook=hook))


async def test_a_tail_publishes_contiguous_frames_only_once() -> None:
    tail = Tail(RUN, head=2)
    viewer = Viewer(RUN, maxsize=100)
    tail.viewers.add(viewer)
    assert [f.seq for f in tail.publish([stored(1), stored(2), stored(3), stored(4)])] == [3, 4]
    assert tail.publish([stored(3), stored(4)]) == []  # an overlapping read
    assert tail.publish([stored(6)]) == []  # does not continue the head: read again later
    assert [f.seq for f in tail.publish([stored(5, terminal=True), stored(6)])] == [5]
    assert tail.finished and tail.head == 5
    assert [f.seq for f in viewer.take()[0]] == [3, 4, 5]


@pytest.mark.parametrize("seed", range(500))
async def test_any_interleaving_delivers_exactly_the_rest_of_the_run(seed: int) -> None:
    """Writer, tail reads (some stale) and a viewer joining at a random moment."""
    rng = random.Random(seed)
    table = Table(rng)
    tail = Tail(RUN, head=0)
    total = rng.randint(1, 40)

    async def writer() -> None:
        while len(table.events) < total:
            count = min(rng.randint(1, 4), total - len(table.events))
            last_batch = len(table.events) + count == total
            table.append(count - 1 if last_batch else count, terminal=last_batch)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)

    async def reader() -> None:
        # The hub: reads from the head, sometimes publishing long after reading.
        while not tail.finished:
            rows = [e for e in table.events if e.seq > tail.head][: rng.randint(1, 6)]
            for _ in range(rng.randint(0, 4)):
                await asyncio.sleep(0)
            tail.publish(rows)
            await asyncio.sleep(0)

    async def watcher() -> tuple[int, list[int]]:
        for _ in range(rng.randint(0, 30)):
            await asyncio.sleep(0)
        viewer = Viewer(RUN, maxsize=rng.choice([1, 2, 3, 100]))
        tail.add(viewer)
        cursor = rng.randint(0, len(table.events) + 3)  # past the head too: a bold client
        return cursor, await seqs(follow(viewer, cursor, table.read_after, idle_s=5, limit=4))

    _, _, (cursor, got) = await asyncio.gather(writer(), reader(), watcher())
    assert got == list(range(cursor + 1, total + 1))


async def test_an_overflowing_viewer_keeps_the_terminal_frame() -> None:
    viewer = Viewer(RUN, maxsize=1)
    viewer.offer([frame_of(stored(1)), frame_of(stored(2))])
    viewer.offer([frame_of(stored(3)), frame_of(stored(4, terminal=True))])
    frames, overflowed = viewer.take()
    assert overflowed and [f.seq for f in frames] == [4]


async def test_a_viewer_past_the_end_of_a_finished_tail_is_told_it_is_over() -> None:
    table = Table()
    table.append(2, terminal=True)
    tail = Tail(RUN, head=0)
    tail.publish(table.events)
    viewer = Viewer(RUN, maxsize=10)
    tail.add(viewer)
    assert await seqs(follow(viewer, 3, table.read_after, idle_s=5)) == []


async def test_a_viewer_idling_after_its_catch_up_and_a_wake_up_keeps_no_page() -> None:
    # A suspended generator keeps its locals: an idle viewer must not keep the last
    # page it delivered (up to a table read's bytes) until its next event.
    table = Table()
    table.append(50)
    viewer = Viewer(RUN, maxsize=100)
    batches = follow_batches(viewer, 0, table.read_after, idle_s=60)
    page = await anext(batches)
    assert [frame.seq for frame in page] == list(range(1, 51))
    waiting = asyncio.create_task(anext(batches))
    await asyncio.sleep(0.01)  # now idle in `wait`
    assert not waiting.done()
    assert _held_by_generators(page) == []
    viewer.offer([frame_of(e) for e in table.append(3)])
    woken = await waiting
    assert [frame.seq for frame in woken] == [51, 52, 53]
    waiting = asyncio.create_task(anext(batches))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert _held_by_generators(woken) == []
    assert all(_held_by_generators(frame) == [] for frame in woken)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await batches.aclose()


def _held_by_generators(item: object) -> list[object]:
    gc.collect()
    return [r for r in gc.get_referrers(item) if inspect.isasyncgen(r)]
