"""The stream manager on a real PostgreSQL: batching, the swap race, fencing, completion."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from broker.errors import DatabaseUnavailable
from broker.store.notify import NOTIFY_CHANNEL, parse_notify
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunFlush
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
)
from models.ids import RunId
from tests.integration.streams_helpers import (
    counter,
    manager,
    open_runs,
    run_row,
    stored,
    text,
)


def _texts(events: list[Any]) -> list[str]:
    return [e.event.data.text for e in events if e.event.event_type == "text"]


async def test_2000_events_over_one_second_take_about_ten_flushes(store: Store) -> None:
    async with manager(store, interval_s=0.1) as streams:
        (run,) = await open_runs(store, streams)
        # Paced by the clock, not by sleep counts, so a loaded machine still spreads
        # the 2,000 events over one second.
        began, pushed = time.monotonic(), 0
        while pushed < 2000:
            due = min(2000, int(2000 * (time.monotonic() - began)) + 1)
            for i in range(pushed, due):
                run.push(text(str(i)))
            pushed = due
            await asyncio.sleep(0.005)
        assert await run.wait_stored(run.next_seq - 1)
        flushes = counter(streams._metrics, "broker_flushes_total")
    assert 8 <= flushes <= 15, flushes
    events = await stored(store, run)
    assert [e.seq for e in events] == list(range(1, 2002))
    assert _texts(events) == [str(i) for i in range(2000)]


async def test_first_event_after_idle_is_stored_at_once_and_load_waits_an_interval(
    store: Store,
) -> None:
    async with manager(store, interval_s=0.5) as streams:
        (run,) = await open_runs(store, streams)
        assert await run.wait_stored(run.push(text("warm-up")) or 0)
        await asyncio.sleep(0.6)  # idle for longer than an interval

        pushed = time.monotonic()
        assert await run.wait_stored(run.push(text("after idle")) or 0)
        first = time.monotonic() - pushed
        assert first < 0.25, f"the first event after idle waited {first:.3f}s"

        # Right behind it, under "load": batched until an interval after that flush began.
        assert await run.wait_stored(run.push(text("right behind")) or 0)
        second = time.monotonic() - pushed
        assert second >= 0.4, f"the next flush came {second:.3f}s after the previous one"


class _SlowStore(Store):
    """Every flush takes a while, so pushes keep landing while one is in flight."""

    async def flush_runs(
        self, writer_id: str, lease_s: float, runs: Any, events: Any
    ) -> dict[RunId, str | None]:
        async with self.transaction() as conn:
            await conn.execute(sa.text("SELECT pg_sleep(0.02)"))
        await asyncio.sleep(0.01)
        return await super().flush_runs(writer_id, lease_s, runs, events)


async def test_events_pushed_during_slow_flushes_are_stored_exactly_once_in_order(
    store: Store,
) -> None:
    slow = _SlowStore(store.engine, store.keyring)
    rng = random.Random(7)
    async with manager(slow, interval_s=0) as streams:
        runs = await open_runs(slow, streams, 4)

        async def produce(index: int) -> None:
            for i in range(300):
                assert runs[index].push(text(f"{index}:{i}")) is not None
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.random() / 500)

        await asyncio.gather(*(produce(i) for i in range(len(runs))))
        for run in runs:
            assert await run.wait_stored(run.next_seq - 1)
        flushes = counter(streams._metrics, "broker_flushes_total")
    assert 5 <= flushes < 1200  # batches formed while flushes were in flight
    for index, run in enumerate(runs):
        events = await stored(store, run)
        assert [e.seq for e in events] == list(range(1, 302))
        assert _texts(events) == [f"{index}:{i}" for i in range(300)]


async def test_a_writer_that_lost_its_lease_writes_nothing_and_is_halted(store: Store) -> None:
    async with manager(store) as streams:
        mine, other = await open_runs(store, streams, 2)
        assert await mine.wait_stored(mine.push(text("kept"), agent_event_id="1") or 0)
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE runs SET writer_id = 'other' WHERE id = :id"), {"id": mine.run_id}
            )
        for i in range(5):
            mine.push(text(f"fenced {i}"), agent_event_id=str(i + 2))
        other_seq = other.push(text("unaffected")) or 0

        assert await mine.wait_closed() == "lease_lost"
        assert mine.halted.is_set()
        assert mine.push(text("too late")) is None
        assert await other.wait_stored(other_seq)
        assert streams.get(other.run_id) is other

    assert [e.seq for e in await stored(store, mine)] == [1, 2]
    row = await run_row(store, mine)
    assert (row.writer_id, row.last_seq, row.agent_cursor) == ("other", 2, "1")
    assert [e.seq for e in await stored(store, other)] == [1, 2]


class _FlakyStore(Store):
    """A database that is down until the test says otherwise."""

    down = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failed = asyncio.Event()

    async def flush_runs(
        self, writer_id: str, lease_s: float, runs: Any, events: Any
    ) -> dict[RunId, str | None]:
        if self.down:
            self.failed.set()
            raise DatabaseUnavailable("down, as the test scripted")
        return await super().flush_runs(writer_id, lease_s, runs, events)


async def test_a_run_over_its_buffer_cap_ends_with_buffer_overflow_and_loses_no_stored_prefix(
    store: Store,
) -> None:
    flaky = _FlakyStore(store.engine, store.keyring)
    flaky.down = False
    async with manager(flaky, run_buffer_max=5) as streams:
        (run,) = await open_runs(flaky, streams)
        flaky.down = True
        assert [run.push(text(str(i))) for i in range(5)] == [2, 3, 4, 5, 6]
        await flaky.failed.wait()  # a flush failed and kept its batch
        assert run.unflushed == 5
        assert run.push(text("one too many")) is None
        assert run.halt_reason == "buffer_overflow"
        assert run.push(text("after the end")) is None
        assert run.unflushed == 6  # bounded: the cap plus the terminal event
        flaky.down = False
        assert await run.wait_closed() == "stored"
        assert counter(streams._metrics, "broker_flush_retries_total") >= 1

    events = await stored(store, run)
    assert [e.seq for e in events] == list(range(1, 8))
    assert _texts(events) == [str(i) for i in range(5)]
    assert events[-1].event.event_type == "error"
    assert events[-1].event.data.error_type == "buffer_overflow"
    row = await run_row(store, run)
    assert (row.status, row.error_type, row.writer_id, row.last_seq) == (
        "failed",
        "buffer_overflow",
        None,
        7,
    )


async def test_terminal_events_finish_their_runs_in_the_flush_that_stores_them(
    store: Store,
) -> None:
    answer = [ChatMessage(role="assistant", content="42 orders")]
    async with manager(store, interval_s=0.05) as streams:
        done, failed, cancelled = await open_runs(store, streams, 3)
        done.push(text("4"), agent_event_id="1")
        done.push(Complete(data=CompleteData(new_messages=answer)), agent_event_id="2")
        assert done.push(text("after the terminal")) is None
        failed.push(ErrorEvent(data=ErrorData(error="model down", error_type="model_error")))
        cancelled.push(Cancelled(data=CancelledData(by="member-9")), agent_event_id="1")
        outcomes = [await s.wait_closed() for s in (done, failed, cancelled)]
    assert outcomes == ["stored"] * 3

    row = await run_row(store, done)
    assert (row.status, row.last_seq, row.agent_cursor, row.writer_id) == (
        "completed",
        3,
        "2",
        None,
    )
    assert row.finished_at is not None and row.lease_expires_at is None
    assert [m.message for m in await store.list_messages(done.thread_id)] == answer
    assert [e.event.event_type for e in await stored(store, done)] == [
        "run_started",
        "text",
        "complete",
    ]
    row = await run_row(store, failed)
    assert (row.status, row.error, row.error_type) == ("failed", "model down", "model_error")
    row = await run_row(store, cancelled)
    assert (row.status, row.aborted_by, row.finished_at is not None) == (
        "cancelled",
        "member-9",
        True,
    )


async def test_runs_without_events_keep_their_lease_alive(store: Store) -> None:
    lease_s = 0.6
    async with manager(store, lease_s=lease_s) as streams:
        (run,) = await open_runs(store, streams, lease_s=lease_s)
        first = (await run_row(store, run)).lease_expires_at
        await asyncio.sleep(lease_s * 2)  # two lease periods with nothing to write
        row = await run_row(store, run)
        assert row.leased, "the lease of an idle run expired"
        assert row.lease_expires_at > first
        assert counter(streams._metrics, "broker_flushes_total") >= 3


async def test_flush_notifies_each_run_that_got_events_with_its_new_head(
    store: Store, database_url: str
) -> None:
    listener = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        async with manager(store, interval_s=1.0) as streams:
            a, idle = await open_runs(store, streams, 2)
            a.push(text("x"))
            assert parse_notify(await asyncio.wait_for(received.get(), 5)) == (
                a.run_id,
                2,
            )
            # A renewal-only flush of `idle` wakes nobody.
            assert await store.flush_runs(
                streams.writer_id, 10, [RunFlush(idle.run_id, idle.thread_id, 0)], []
            ) == {idle.run_id: None}
        assert received.empty()
    finally:
        await listener.close()


async def test_flush_of_a_run_owned_by_another_writer_writes_nothing(store: Store) -> None:
    async with manager(store) as streams:
        (run,) = await open_runs(store, streams)
        pending = [PendingEvent(run.run_id, 2, text("x"), datetime.now(UTC))]
        accepted = await store.flush_runs(
            "someone-else",
            10,
            [RunFlush(run.run_id, run.thread_id, 2, agent_event_id="9")],
            pending,
        )
        assert accepted == {}
    assert [e.seq for e in await stored(store, run)] == [1]
    assert (await run_row(store, run)).agent_cursor is None


async def test_close_flushes_what_is_buffered_and_hands_the_runs_over(store: Store) -> None:
    async with manager(store, interval_s=30) as streams:
        (run,) = await open_runs(store, streams)
        assert await run.wait_stored(run.push(text("0"), agent_event_id="1") or 0)
        for i in range(1, 4):
            run.push(text(str(i)), agent_event_id=str(i + 1))  # held back by the 30 s interval
        assert run.stored_seq == 2
    assert run.outcome == "released"
    assert streams._task is not None and streams._task.done()
    events = await stored(store, run)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    row = await run_row(store, run)
    assert (row.status, row.writer_id, row.leased, row.last_seq, row.agent_cursor) == (
        "streaming",
        None,
        False,
        5,
        "4",
    )
