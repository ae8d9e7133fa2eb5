"""The hub against a real PostgreSQL: batched reads, polling fallback, LISTEN reconnects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store.postgres import Store
from broker.store.records import RunRecord
from broker.web.metrics import Metrics
from subscribe.frame import frame_of_raw
from subscribe.hub import Hub
from subscribe.listener import Listener
from subscribe.viewer import Viewer
from tests.database import hear_goodbye
from tests.e2e.test_subscribe_support import (
    append_texts,
    head_is,
    insert_silently,
    new_run,
    pending,
    sample,
    until,
)

HubFactory = Callable[..., Hub]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def make_hub(store: Store, metrics: Metrics) -> HubFactory:
    def make(**options: object) -> Hub:
        settings: dict[str, object] = {"poll_interval_s": 60.0, "viewer_queue_max": 1000}
        settings.update(options)
        return Hub(store, metrics, **settings)  # type: ignore[arg-type]

    return make


def reads(metrics: Metrics) -> float:
    return sample(metrics, "broker_tail_reads_total")


def notifications(metrics: Metrics) -> float:
    return sample(metrics, "broker_notifications_total")


def queued(viewer: Viewer) -> list[int]:
    return [frame.seq for frame in viewer.take()[0]]


async def kill_listener(engine: AsyncEngine, hub: Hub) -> int:
    assert hub.listener is not None and hub.listener.backend_pid is not None
    pid = hub.listener.backend_pid
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    return pid


@pytest.mark.parametrize("runs", [1, 100])
async def test_a_sweep_is_one_statement_however_many_runs_are_tailed(
    store: Store, metrics: Metrics, make_hub: HubFactory, runs: int
) -> None:
    async with make_hub(listen=False) as hub:
        tailed: list[tuple[RunRecord, Viewer]] = []
        for _ in range(runs):
            run = await new_run(store)
            tailed.append((run, hub.join(run.run_id, 1)))
        await hub.sweep()  # settle: the joins' first read is behind us
        await insert_silently(store, [pending(run.run_id, 2) for run, _ in tailed])
        before = reads(metrics)
        await hub.sweep()
        assert reads(metrics) - before == 1
        assert all(queued(viewer) == [2] for _, viewer in tailed)
        await hub.sweep()  # nothing new: still one statement, nothing delivered
        assert reads(metrics) - before == 2
        assert all(queued(viewer) == [] for _, viewer in tailed)


@pytest.mark.parametrize("viewers", [1, 200])
async def test_reads_per_event_do_not_grow_with_viewers_of_a_run(
    store: Store, metrics: Metrics, make_hub: HubFactory, viewers: int
) -> None:
    async with make_hub() as hub:
        assert hub.listener is not None
        await until(lambda: hub.listener is not None and hub.listener.connected, "LISTEN")
        run = await new_run(store)
        watching = [hub.join(run.run_id, 1) for _ in range(viewers)]
        await hub.sweep()
        before = reads(metrics)
        for seq in range(2, 12):
            await append_texts(store, run.run_id, seq, 1)
            await until(head_is(hub, run.run_id, seq), f"seq {seq}")
        # One NOTIFY, one read per flush: the same for 1 viewer as for 200.
        assert reads(metrics) - before == 10
        expected = list(range(2, 12))
        assert all(queued(viewer) == expected for viewer in watching)


async def test_polling_alone_delivers_everything(
    store: Store, metrics: Metrics, make_hub: HubFactory
) -> None:
    async with make_hub(listen=False, poll_interval_s=0.05) as hub:
        run = await new_run(store)
        viewer = hub.join(run.run_id, 1)
        got: list[int] = []
        for first in range(2, 30, 4):
            await append_texts(store, run.run_id, first, 4)
            await until(head_is(hub, run.run_id, first + 3), "a poll")
            got += queued(viewer)
        assert got == list(range(2, 30))
        assert notifications(metrics) == 0


async def test_with_listen_killed_polling_delivers_and_listen_comes_back(
    store: Store, engine: AsyncEngine, metrics: Metrics, make_hub: HubFactory
) -> None:
    # The first retry waits a second: a window in which only polling can deliver.
    async with make_hub(poll_interval_s=0.05, listen_retry_s=(1.0, 1.0)) as hub:
        listener = hub.listener
        assert listener is not None
        await until(lambda: listener.connected, "LISTEN")
        run = await new_run(store)
        viewer = hub.join(run.run_id, 1)
        old_pid = await kill_listener(engine, hub)
        await until(lambda: not listener.connected, "the listener to notice")
        heard = notifications(metrics)
        await append_texts(store, run.run_id, 2, 3)
        await until(lambda: hub.tail_head(run.run_id) == 4, "polling to deliver")
        assert not listener.connected and notifications(metrics) == heard
        await until(lambda: listener.connected, "LISTEN to come back", within_s=15)
        assert listener.connects == 2 and listener.backend_pid != old_pid
        await append_texts(store, run.run_id, 5, 1)
        await until(lambda: notifications(metrics) > heard, "a NOTIFY after the reconnect")
        await until(lambda: hub.tail_head(run.run_id) == 5, "seq 5")
        assert queued(viewer) == [2, 3, 4, 5]


async def test_a_listen_connection_that_heard_its_servers_goodbye_is_replaced(
    store: Store,
) -> None:
    # The socket stays open: only the health ping can find out, and what it meets is
    # the driver's protocol error, not a connection error.
    listener = Listener(
        store, lambda _payload: None, lambda: None, retry_s=(0.05, 0.05), health_s=0.05
    )
    task = asyncio.create_task(listener.run())
    try:
        await until(lambda: listener.connected, "LISTEN")
        assert listener._listening is not None
        hear_goodbye(listener._listening._connection)
        await until(lambda: listener.connects == 2, "LISTEN to come back")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_after_a_reconnect_every_tail_is_swept_once(
    store: Store, engine: AsyncEngine, metrics: Metrics, make_hub: HubFactory
) -> None:
    # Polling is a minute away: only the sweep after reconnecting can find the rows
    # whose NOTIFY was sent while nobody listened.
    async with make_hub(poll_interval_s=60.0, listen_retry_s=(0.5, 0.5)) as hub:
        listener = hub.listener
        assert listener is not None
        await until(lambda: listener.connected, "LISTEN")
        runs = [await new_run(store) for _ in range(3)]
        viewers = [hub.join(run.run_id, 1) for run in runs]
        await hub.sweep()
        await kill_listener(engine, hub)
        await until(lambda: not listener.connected, "the listener to notice")
        await store.append_events([pending(run.run_id, 2) for run in runs])
        await until(lambda: listener.connects == 2, "LISTEN to come back")
        await until(lambda: all(hub.tail_head(r.run_id) == 2 for r in runs), "the sweep")
        assert all(queued(viewer) == [2] for viewer in viewers)


async def test_the_last_viewer_out_removes_the_tail(
    store: Store, metrics: Metrics, make_hub: HubFactory
) -> None:
    async with make_hub(listen=False) as hub:
        run = await new_run(store)
        first, second = hub.join(run.run_id, 1), hub.join(run.run_id, 1)
        assert (hub.tail_count, hub.viewer_count) == (1, 2)
        hub.leave(first)
        hub.leave(first)  # leaving twice is harmless
        assert (hub.tail_count, hub.viewer_count) == (1, 1)
        hub.leave(second)
        assert (hub.tail_count, hub.viewer_count) == (0, 0)
        assert sample(metrics, "broker_tails") == 0 and sample(metrics, "broker_viewers") == 0
        before = reads(metrics)
        await hub.sweep()
        assert reads(metrics) == before  # nothing tailed, nothing read


async def test_closing_the_hub_ends_viewers_and_leaves_no_task(
    store: Store, make_hub: HubFactory
) -> None:
    hub = make_hub()
    async with hub:
        tasks = hub.tasks
        assert len(tasks) == 2 and not any(task.done() for task in tasks)
        run = await new_run(store)
        viewer = hub.join(run.run_id, 1)
    assert viewer.closed and all(task.done() for task in tasks) and hub.tasks == ()


async def test_a_dead_database_does_not_kill_the_reader(
    store: Store, engine: AsyncEngine, metrics: Metrics, make_hub: HubFactory
) -> None:
    async with make_hub(listen=False, poll_interval_s=0.02) as hub:
        run = await new_run(store)
        viewer = hub.join(run.run_id, 1)
        before = reads(metrics)
        # Unreadable for a moment: every sweep fails, is logged, and is retried.
        async with engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE raw_stream_events RENAME TO hidden"))
        await until(lambda: reads(metrics) >= before + 3, "failing sweeps")
        async with engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE hidden RENAME TO raw_stream_events"))
        await append_texts(store, run.run_id, 2, 1)
        await until(lambda: hub.tail_head(run.run_id) == 2, "the reader to recover")
        assert queued(viewer) == [2]
        assert all(not task.done() for task in hub.tasks)


async def test_committed_events_reach_the_tail_without_a_read_and_only_once(
    store: Store, metrics: Metrics, make_hub: HubFactory
) -> None:
    async with make_hub(listen=False) as hub:
        run = await new_run(store)
        viewer = hub.join(run.run_id, 1)
        await hub.sweep()
        first = [pending(run.run_id, seq) for seq in (2, 3)]
        await insert_silently(store, first)  # committed, as the flush does before telling
        before = reads(metrics)
        hub.publish_stored(run.run_id, first)
        handed = viewer.take()[0]
        assert [frame.seq for frame in handed] == [2, 3]
        assert reads(metrics) == before
        # The same bytes a table read would have produced.
        table = await store.read_raw_events(run.run_id, 1)
        assert [frame.body for frame in handed] == [frame_of_raw(raw).body for raw in table]

        hub.publish_stored(run.run_id, first)  # told twice: nothing twice
        gap = [pending(run.run_id, 5)]  # 4 is not here yet: the table's read brings both
        await insert_silently(store, [pending(run.run_id, 4), *gap])
        hub.publish_stored(run.run_id, gap)
        assert queued(viewer) == []
        await hub.sweep()
        assert queued(viewer) == [4, 5]
        hub.publish_stored(run.run_id, gap)  # after the read: still nothing twice
        assert queued(viewer) == []
