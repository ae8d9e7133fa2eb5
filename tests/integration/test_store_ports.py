"""The store's contract, run against both adapters: PostgreSQL and the in-memory twin.

Every test here takes `adapter`, parametrized over `postgres` (a real,
migrated database) and `memory` (`broker.store.memory.MemoryStore`), so the
unit tests that run the flush loop, the stream manager and the hub on the
twin stand on the same behaviour as production.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from broker.errors import Conflict, NotFound, RunInProgress
from broker.store.memory import MemoryStore
from broker.store.notify import parse_cancel, parse_notify
from broker.store.ports import (
    FlushPort,
    LifecyclePort,
    ProducerReads,
    RetentionPort,
    SubscriptionReads,
    TailPort,
)
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunEnding, RunFlush, RunRecord
from broker.store.sealing import decode_event
from models.events import ChatMessage, Complete, CompleteData, StoredEvent, Text, TextData
from models.ids import IntegrationId, RunId, WorkspaceId, new_id

AnyStore = Store | MemoryStore


@pytest.fixture(params=["postgres", "memory"])
def adapter(request: pytest.FixtureRequest) -> AnyStore:
    if request.param == "memory":
        return MemoryStore()
    store: Store = request.getfixturevalue("store")
    return store


def test_both_adapters_satisfy_every_port() -> None:
    # Checked by mypy: a missing or mistyped method fails the build, not this assert.
    for adapter_type in (Store, MemoryStore):
        ports: list[type] = [
            FlushPort,
            LifecyclePort,
            ProducerReads,
            RetentionPort,
            SubscriptionReads,
            TailPort,
        ]
        for port in ports:
            missing = [
                name
                for name in dir(port)
                if not name.startswith("_") and not hasattr(adapter_type, name)
            ]
            assert missing == [], (adapter_type, port, missing)


async def _run(adapter: AnyStore, workspace: str = "acme", lease_s: float = 60) -> RunRecord:
    workspace_id = await adapter.ensure_workspace(workspace)
    thread = await adapter.create_thread(workspace_id, "t")
    return await adapter.create_run(
        thread, writer_id="w1", lease_s=lease_s, message=ChatMessage(role="user", content="hi")
    )


def _text(run: RunRecord, seq: int) -> PendingEvent:
    return PendingEvent(run.run_id, seq, Text(data=TextData(text=f"t{seq}")), datetime.now(UTC))


async def test_a_new_run_streams_with_run_started_at_seq_1_and_the_users_message(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    assert (run.status, run.last_seq, run.writer_id) == ("streaming", 1, "w1")
    (started,) = await adapter.read_events(run.run_id, after=0)
    assert (started.seq, started.event.event_type) == (1, "run_started")
    (message,) = await adapter.list_messages(run.thread_id)
    assert (message.position, message.message.content, message.run_id) == (1, "hi", run.run_id)


async def test_a_second_active_run_on_a_thread_is_run_in_progress_naming_the_first(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    thread = await adapter.get_thread(run.workspace_id, run.thread_id)
    with pytest.raises(RunInProgress) as raised:
        await adapter.create_run(thread, writer_id="w2", lease_s=60)
    assert raised.value.run_id == str(run.run_id)
    assert isinstance(raised.value, Conflict)


async def test_a_threads_title_reads_back_as_written(adapter: AnyStore) -> None:
    workspace_id = await adapter.ensure_workspace("acme")
    for title in ("Q3 revenue \u2028 by region", None):
        thread = await adapter.create_thread(workspace_id, title)
        assert (await adapter.get_thread(workspace_id, thread.thread_id)).title == title


async def test_another_workspaces_rows_are_not_found(adapter: AnyStore) -> None:
    run = await _run(adapter)
    other = await adapter.ensure_workspace("other")
    with pytest.raises(NotFound):
        await adapter.get_run(other, run.run_id)
    with pytest.raises(NotFound):
        await adapter.get_run_state(other, run.run_id)
    with pytest.raises(NotFound):
        await adapter.get_thread(other, run.thread_id)
    with pytest.raises(NotFound):
        await adapter.get_run(run.workspace_id, RunId(new_id()))


async def test_the_flush_writes_only_runs_the_writer_owns(adapter: AnyStore) -> None:
    mine, theirs = await _run(adapter), await _run(adapter, "b")
    runs = [
        RunFlush(mine.run_id, mine.thread_id, 3, agent_event_id="a3"),
        RunFlush(theirs.run_id, theirs.thread_id, 2),
    ]
    events = [_text(mine, 2), _text(mine, 3), _text(theirs, 2)]
    await adapter.release_runs("w1", [theirs.run_id])
    accepted = await adapter.flush_runs("w1", 60, runs, events)
    assert accepted == {mine.run_id: None}
    assert [e.seq for e in await adapter.read_events(mine.run_id, 0)] == [1, 2, 3]
    assert [e.seq for e in await adapter.read_events(theirs.run_id, 0)] == [1]
    record = await adapter.get_run(mine.workspace_id, mine.run_id)
    assert (record.last_seq, record.agent_event_id) == (3, "a3")


async def test_a_flush_sent_twice_stores_each_event_once(adapter: AnyStore) -> None:
    run = await _run(adapter)
    flush = [RunFlush(run.run_id, run.thread_id, 2)]
    assert await adapter.flush_runs("w1", 60, flush, [_text(run, 2)]) == {run.run_id: None}
    assert await adapter.flush_runs("w1", 60, flush, [_text(run, 2)]) == {run.run_id: None}
    assert [e.seq for e in await adapter.read_events(run.run_id, 0)] == [1, 2]


async def test_the_terminal_flush_ends_the_run_and_appends_its_messages(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    answer = ChatMessage(role="assistant", content="done")
    done = Complete(data=CompleteData(new_messages=[answer]))
    ending = RunEnding("completed", messages=(answer,))
    pending = PendingEvent(run.run_id, 2, done, datetime.now(UTC))
    flush = [RunFlush(run.run_id, run.thread_id, 2, ending=ending)]
    assert await adapter.flush_runs("w1", 60, flush, [pending]) == {run.run_id: None}
    state = await adapter.get_run_state(run.workspace_id, run.run_id)
    assert (state.record.status, state.record.writer_id, state.head) == ("completed", None, 2)
    assert state.record.finished_at is not None
    assert [m.message.content for m in await adapter.list_messages(run.thread_id)] == [
        "hi",
        "done",
    ]
    # Ended: the writer no longer owns it, so a late flush is fenced out.
    assert await adapter.flush_runs("w1", 60, [RunFlush(run.run_id, run.thread_id, 0)], []) == {}


async def test_read_events_many_reads_each_run_after_its_head(adapter: AnyStore) -> None:
    a, b = await _run(adapter), await _run(adapter, "b")
    await adapter.append_events([_text(a, 2), _text(a, 3), _text(b, 2)])
    found = await adapter.read_events_many({a.run_id: 1, b.run_id: 2}, limit_per_run=1)
    assert {run_id: [e.seq for e in events] for run_id, events in found.items()} == {a.run_id: [2]}
    assert await adapter.read_events_many({}, limit_per_run=10) == {}


def _big(run: RunRecord, seq: int, size: int) -> PendingEvent:
    return PendingEvent(run.run_id, seq, Text(data=TextData(text="x" * size)), datetime.now(UTC))


async def test_reads_are_bounded_by_rows_and_bytes_and_say_when_more_is_there(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    await adapter.append_events([_big(run, seq, 1_000) for seq in range(2, 7)])

    def seqs(page: list[StoredEvent]) -> list[int]:
        return [e.seq for e in page]

    # ~100 bytes of run_started and two ~1 KB events fit 2,500 bytes; a third does not.
    page = await adapter.read_events(run.run_id, 0, limit=100, max_bytes=2_500)
    assert (seqs(page), page.more) == ([1, 2, 3], True)
    # A budget smaller than one event still returns that event.
    page = await adapter.read_events(run.run_id, 3, limit=100, max_bytes=10)
    assert (seqs(page), page.more) == ([4], True)
    page = await adapter.read_events(run.run_id, 4, limit=1)
    assert (seqs(page), page.more) == ([5], True)
    page = await adapter.read_events(run.run_id, 4, limit=2)
    assert (seqs(page), page.more) == ([5, 6], False)
    page = await adapter.read_events(run.run_id, 6, limit=10, max_bytes=10)
    assert (seqs(page), page.more) == ([], False)
    # The raw read is the same page, decrypted but not parsed.
    parsed = await adapter.read_events(run.run_id, 0, limit=100, max_bytes=2_500)
    raw = await adapter.read_raw_events(run.run_id, 0, limit=100, max_bytes=2_500)
    assert ([e.seq for e in raw], raw.more) == (seqs(parsed), parsed.more)
    assert [decode_event(r.seq, r.plaintext) for r in raw] == list(parsed)

    other = await _run(adapter, "b")
    found = await adapter.read_events_many(
        {run.run_id: 1, other.run_id: 0}, limit_per_run=100, max_bytes_per_run=2_400
    )
    assert {r: (seqs(p), p.more) for r, p in found.items()} == {
        run.run_id: ([2, 3], True),
        other.run_id: ([1], False),
    }


async def test_a_listener_is_woken_with_each_runs_new_head(adapter: AnyStore) -> None:
    run = await _run(adapter)
    got: list[str] = []
    woke = asyncio.Event()

    def on_payload(payload: str) -> None:
        got.append(payload)
        woke.set()

    listening = await adapter.listen(on_payload, lambda: None)
    try:
        await adapter.flush_runs(
            "w1", 60, [RunFlush(run.run_id, run.thread_id, 3)], [_text(run, 2), _text(run, 3)]
        )
        await asyncio.wait_for(woke.wait(), 10)
        assert [parse_notify(p) for p in got] == [(run.run_id, 3)]
        # A renewal alone (last_seq 0) wakes nobody.
        woke.clear()
        await adapter.flush_runs("w1", 60, [RunFlush(run.run_id, run.thread_id, 0)], [])
        await adapter.append_events([_text(run, 4)])
        await asyncio.wait_for(woke.wait(), 10)
        assert [parse_notify(p) for p in got] == [(run.run_id, 3), (run.run_id, 4)]
        await listening.ping()
    finally:
        await listening.close()
    assert listening.is_closed()


async def test_cancel_raises_the_flag_once_and_leaves_an_ended_run_alone(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    first = await adapter.request_cancel(run.workspace_id, run.run_id, "alice")
    again = await adapter.request_cancel(run.workspace_id, run.run_id, "bob")
    assert first.abort_requested_at is not None
    assert again.abort_requested_at == first.abort_requested_at
    state = await adapter.get_run_state(run.workspace_id, run.run_id)
    assert state.aborted_by == "alice"
    with pytest.raises(NotFound):
        await adapter.request_cancel(WorkspaceId(new_id()), run.run_id, "mallory")


async def test_cancel_wakes_listeners_and_every_later_flush_returns_who_asked(
    adapter: AnyStore,
) -> None:
    run, other = await _run(adapter), await _run(adapter, "b")
    cancels: list[str] = []
    woke = asyncio.Event()

    def on_cancel(payload: str) -> None:
        cancels.append(payload)
        woke.set()

    listening = await adapter.listen(lambda _: None, lambda: None, on_cancel=on_cancel)
    try:
        both = [RunFlush(run.run_id, run.thread_id, 0), RunFlush(other.run_id, other.thread_id, 0)]
        assert await adapter.flush_runs("w1", 60, both, []) == {
            run.run_id: None,
            other.run_id: None,
        }
        await adapter.request_cancel(run.workspace_id, run.run_id, "alice:the:admin")
        await asyncio.wait_for(woke.wait(), 10)
        # The winner of the flag is named, even when a later request names another member.
        await adapter.request_cancel(run.workspace_id, run.run_id, "bob")
        assert await adapter.flush_runs("w1", 60, both, []) == {
            run.run_id: "alice:the:admin",
            other.run_id: None,
        }
        await asyncio.sleep(0.05)
        assert [parse_cancel(p) for p in cancels] == [(run.run_id, "alice:the:admin")] * 2
        # An ended run sends nothing more.
        ending = RunEnding("cancelled", aborted_by="alice:the:admin")
        await adapter.flush_runs(
            "w1", 60, [RunFlush(run.run_id, run.thread_id, 0, ending=ending)], []
        )
        await adapter.request_cancel(run.workspace_id, run.run_id, "carol")
        await asyncio.sleep(0.05)
        assert len(cancels) == 2
    finally:
        await listening.close()


async def test_only_expired_leases_are_claimed_and_the_old_writer_is_fenced_out(
    adapter: AnyStore,
) -> None:
    expired = await _run(adapter, "a", lease_s=0)
    live = await _run(adapter, "b", lease_s=60)
    claimed = await adapter.claim_expired_runs("w2", 60, limit=10)
    assert [r.run_id for r in claimed] == [expired.run_id]
    assert claimed[0].writer_id == "w2"
    assert await adapter.claim_expired_runs("w3", 60, limit=10) == []
    old = [RunFlush(expired.run_id, expired.thread_id, 2)]
    assert await adapter.flush_runs("w1", 60, old, [_text(expired, 2)]) == {}
    assert (await adapter.get_run(live.workspace_id, live.run_id)).writer_id == "w1"


async def test_released_runs_are_claimable_and_only_the_writers_own_are_released(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    assert await adapter.release_runs("someone-else", [run.run_id]) == set()
    assert await adapter.release_runs("w1", [run.run_id]) == {run.run_id}
    assert [r.run_id for r in await adapter.claim_expired_runs("w2", 60, limit=1)] == [run.run_id]


async def _make_pending(adapter: AnyStore, run: RunRecord) -> None:
    """Put a run back to `pending` with no writer and no lease: created, never started."""
    if isinstance(adapter, MemoryStore):
        held = adapter._runs[run.run_id]
        held.record = replace(held.record, status="pending", writer_id=None)
        held.lease_expires_at = None
        return
    async with adapter.transaction() as conn:
        await conn.execute(
            sa.text(
                "UPDATE runs SET status = 'pending', writer_id = NULL, lease_expires_at = NULL "
                "WHERE id = :id"
            ),
            {"id": run.run_id},
        )


async def test_a_pending_run_never_started_is_claimed_and_becomes_streaming(
    adapter: AnyStore,
) -> None:
    run = await _run(adapter)
    await _make_pending(adapter, run)
    # Younger than a lease: its creator may still be starting it.
    assert await adapter.claim_expired_runs("w2", 60, limit=10) == []
    (claimed,) = await adapter.claim_expired_runs("w2", 0, limit=10)
    assert (claimed.run_id, claimed.status, claimed.writer_id) == (run.run_id, "streaming", "w2")
    # The claimant's flush passes the fence, and a `producer_lost` ending interrupts it.
    lost = RunEnding("interrupted", error="gone", error_type="producer_lost")
    flush = [RunFlush(run.run_id, run.thread_id, 2, ending=lost)]
    assert await adapter.flush_runs("w2", 60, flush, [_text(run, 2)]) == {run.run_id: None}
    assert (await adapter.get_run(run.workspace_id, run.run_id)).status == "interrupted"


async def test_two_replicas_sweeping_at_once_never_claim_the_same_run(
    adapter: AnyStore,
) -> None:
    runs = [await _run(adapter, f"w{i}", lease_s=0) for i in range(12)]
    first, second = await asyncio.gather(
        adapter.claim_expired_runs("r1", 60, limit=8),
        adapter.claim_expired_runs("r2", 60, limit=8),
    )
    one, two = {r.run_id for r in first}, {r.run_id for r in second}
    assert not one & two
    assert one | two == {r.run_id for r in runs}
    for claimed, writer in ((first, "r1"), (second, "r2")):
        assert {r.writer_id for r in claimed} == {writer}


async def test_finished_runs_are_never_claimed(adapter: AnyStore) -> None:
    run = await _run(adapter, lease_s=0)
    ending = RunEnding("completed")
    await adapter.flush_runs("w1", 0, [RunFlush(run.run_id, run.thread_id, 0, ending=ending)], [])
    assert await adapter.claim_expired_runs("w2", 0, limit=10) == []


async def test_retention_deletes_only_finished_runs_events(adapter: AnyStore) -> None:
    done, live = await _run(adapter), await _run(adapter, "b")
    ending = RunEnding("failed", error="x", error_type="y")
    await adapter.flush_runs(
        "w1", 60, [RunFlush(done.run_id, done.thread_id, 0, ending=ending)], []
    )
    assert await adapter.delete_expired_events(0) == 1
    assert await adapter.read_events(done.run_id, 0) == []
    assert len(await adapter.read_events(live.run_id, 0)) == 1


async def test_integrations_are_listed_without_credentials_and_names_are_unique(
    adapter: AnyStore,
) -> None:
    workspace_id = await adapter.ensure_workspace("acme")
    record = await adapter.create_integration(workspace_id, "postgres", "shop", {"dsn": "x"})
    assert await adapter.list_integrations(workspace_id) == [record]
    assert await adapter.integration_credentials(record.integration_id) == (record, {"dsn": "x"})
    with pytest.raises(Conflict):
        await adapter.create_integration(workspace_id, "postgres", "shop", {})
    with pytest.raises(NotFound):
        await adapter.integration_credentials(IntegrationId(new_id()))
    found = await adapter.integration_credentials(record.integration_id, workspace_id=workspace_id)
    assert found == (record, {"dsn": "x"})
    other = await adapter.ensure_workspace("other")
    with pytest.raises(NotFound):
        await adapter.integration_credentials(record.integration_id, workspace_id=other)
