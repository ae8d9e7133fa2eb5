"""Memory per reader is bounded in bytes: 1 MB events against a real PostgreSQL.

Part 1 measured 143 MB -> 3.8 GB with four catch-up readers of a 300 x 1 MB
run (500-row reads) and 1.7 GB for four stalled live viewers. Here the bytes
each holds are measured directly: every catch-up read's frames, every tail
read, and a stalled viewer's queue stay within their budgets, and everything
is delivered all the same, in order, once.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.store.postgres import Store
from broker.store.records import PendingEvent, RawPage
from broker.web.metrics import Metrics
from models.events import Text, TextData
from models.ids import RunId
from subscribe.hub import Hub
from subscribe.subscription import due_batches
from subscribe.viewer import FramePage, follow_batches, frame_of_raw
from tests.e2e.test_subscribe_support import new_run, pending, until

MB = 1_000_000
BUDGET = 3 * 1024 * 1024  # three 1 MB events fit, a fourth does not


def big(run_id: RunId, seq: int) -> PendingEvent:
    return pending(run_id, seq, Text(data=TextData(text=f"{seq}:" + "x" * MB)))


def held(page: RawPage) -> int:
    """The bytes a read put in memory: its events' JSON."""
    return sum(len(event.plaintext) for event in page)


class CountingStore(Store):
    """The real store, remembering every read it answered (`read_raw_events` included:
    it reads through `read_events_many`)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine, store.keyring)
        self.reads: list[RawPage] = []

    async def read_events_many(
        self, heads: Mapping[RunId, int], limit_per_run: int, max_bytes_per_run: int | None = None
    ) -> dict[RunId, RawPage]:
        found = await super().read_events_many(heads, limit_per_run, max_bytes_per_run)
        self.reads.extend(found.values())
        return found


async def test_catch_up_reads_hold_at_most_their_byte_budget_of_1_mb_events(store: Store) -> None:
    run = await new_run(store)
    await store.append_events([big(run.run_id, seq) for seq in range(2, 12)])
    state = await store.get_run_state(run.workspace_id, run.run_id)
    reads = CountingStore(store)

    batches = [b async for b in due_batches(reads, Metrics(), state, 0, max_bytes=BUDGET)]

    assert [f.seq for batch in batches for f in batch] == list(range(1, 12))
    assert len(batches) >= 4  # ~10 MB could not come in one read
    for batch in batches:
        assert sum(frame.size for frame in batch) <= BUDGET
    assert all(held(page) <= BUDGET for page in reads.reads)


async def test_a_stalled_viewer_queue_stays_within_its_byte_budget(store: Store) -> None:
    run = await new_run(store)
    reads = CountingStore(store)
    hub = Hub(
        reads,
        Metrics(),
        poll_interval_s=60.0,
        viewer_queue_max=1_000,  # the event count alone would let 10 MB queue up
        viewer_queue_max_bytes=BUDGET,
        catchup_read_bytes=BUDGET,
    )
    async with hub:
        viewer = hub.join(run.run_id, 1)
        largest = 0
        for seq in range(2, 12):  # the client reads nothing meanwhile
            await store.append_events([big(run.run_id, seq)])
            await until(lambda s=seq: hub.tail_head(run.run_id) == s, f"the tail reaches {seq}")
            largest = max(largest, viewer.queued_bytes)
            assert viewer.queued_bytes <= BUDGET
        assert largest > 2 * MB  # it did queue what fitted
        assert viewer.overflowed  # and was cut loose when the next one did not

        async def read_after(last: int, limit: int) -> FramePage:
            page = await reads.read_raw_events(run.run_id, last, limit, BUDGET)
            return FramePage((frame_of_raw(e) for e in page), more=page.more)

        delivered: list[int] = []
        batches = follow_batches(viewer, 0, read_after, idle_s=5.0)
        async for batch in batches:
            assert batch is not None
            assert sum(frame.size for frame in batch) <= BUDGET
            delivered += [frame.seq for frame in batch]
            if delivered[-1] == 11:
                break
        await batches.aclose()
        hub.leave(viewer)
    assert delivered == list(range(1, 12))
    assert reads.reads
    for page in reads.reads:  # the tail's reads and the catch-up's alike
        assert held(page) <= BUDGET
