"""The store on a real database: encrypted events in, typed events out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from broker.errors import Conflict, DecryptionError, NotFound, UnknownKeyError
from broker.store.crypto import Keyring, generate_key_spec
from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunRecord
from models.events import ChatMessage, Text, TextData
from models.ids import RunId, ThreadId, WorkspaceId, new_id


async def _run(store: Store, workspace: str = "acme") -> RunRecord:
    workspace_id = await store.ensure_workspace(workspace)
    thread = await store.create_thread(workspace_id, "a thread")
    return await store.create_run(thread, writer_id="w1", lease_s=10)


def _texts(run_id: RunId, first: int, count: int) -> list[PendingEvent]:
    now = datetime.now(UTC)
    return [
        PendingEvent(run_id, seq, Text(data=TextData(text=f"{run_id}-{seq}")), now)
        for seq in range(first, first + count)
    ]


async def test_events_of_several_runs_in_one_call_come_back_in_order_by_cursor(
    store: Store,
) -> None:
    a, b = await _run(store), await _run(store, "other")
    await store.append_events(_texts(a.run_id, 2, 5) + _texts(b.run_id, 2, 3))

    events_a = await store.read_events(a.run_id, after=0)
    assert [e.seq for e in events_a] == [1, 2, 3, 4, 5, 6]
    assert events_a[0].event.event_type == "run_started"
    assert [e.event.data.text for e in events_a[1:]] == [  # type: ignore[union-attr]
        f"{a.run_id}-{s}" for s in range(2, 7)
    ]
    assert [e.seq for e in await store.read_events(a.run_id, after=3)] == [4, 5, 6]
    assert [e.seq for e in await store.read_events(a.run_id, after=2, limit=2)] == [3, 4]
    assert [e.seq for e in await store.read_events(b.run_id, after=0)] == [1, 2, 3, 4]


async def test_appending_the_same_batch_twice_stores_it_once(store: Store) -> None:
    run = await _run(store)
    batch = _texts(run.run_id, 2, 4)
    await store.append_events(batch)
    await store.append_events(batch)
    assert [e.seq for e in await store.read_events(run.run_id, after=0)] == [1, 2, 3, 4, 5]


async def test_payload_is_ciphertext_not_plaintext(store: Store) -> None:
    run = await _run(store)
    await store.append_events(
        [PendingEvent(run.run_id, 2, Text(data=TextData(text="top secret")), datetime.now(UTC))]
    )
    async with store.engine.connect() as conn:
        payloads = (await conn.execute(sa.text("SELECT payload FROM raw_stream_events"))).scalars()
        for payload in payloads:
            assert b"top secret" not in payload
            assert b"event_type" not in payload


@pytest.mark.parametrize("target", ["other_seq", "other_run"])
async def test_payload_copied_to_another_row_fails_to_decrypt(store: Store, target: str) -> None:
    a, b = await _run(store), await _run(store, "other")
    await store.append_events(_texts(a.run_id, 2, 2) + _texts(b.run_id, 2, 2))
    victim_run, victim_seq = (a.run_id, 3) if target == "other_seq" else (b.run_id, 2)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE raw_stream_events SET payload = "
                "(SELECT payload FROM raw_stream_events WHERE run_id = :src AND seq = 2) "
                "WHERE run_id = :run AND seq = :seq"
            ),
            {"src": a.run_id, "run": victim_run, "seq": victim_seq},
        )
    with pytest.raises(DecryptionError):
        await store.read_events(victim_run, after=victim_seq - 1)


async def test_tampered_payload_fails_to_decrypt(store: Store) -> None:
    run = await _run(store)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE raw_stream_events SET payload = overlay(payload placing "
                "decode(lpad(to_hex(get_byte(payload, 20) # 1), 2, '0'), 'hex') from 21 for 1)"
            )
        )
    with pytest.raises(DecryptionError):
        await store.read_events(run.run_id, after=0)


async def test_rows_under_an_old_key_read_after_a_new_key_is_added_first(store: Store) -> None:
    old_spec = generate_key_spec("old")
    old_store = Store(store.engine, Keyring.from_spec(old_spec))
    run = await _run(old_store)
    await old_store.append_events(_texts(run.run_id, 2, 2))

    rotated = Keyring.from_spec(generate_key_spec("new") + "," + old_spec)
    assert rotated.primary_id == "new"
    new_store = Store(store.engine, rotated)
    await new_store.append_events(_texts(run.run_id, 4, 1))

    assert [e.seq for e in await new_store.read_events(run.run_id, after=0)] == [1, 2, 3, 4]
    async with store.engine.connect() as conn:
        key_ids = (
            (await conn.execute(sa.text("SELECT key_id FROM raw_stream_events ORDER BY seq")))
            .scalars()
            .all()
        )
    assert key_ids == ["old", "old", "old", "new"]
    # A ring without the new key cannot read its rows: a clear error, never garbage.
    with pytest.raises(UnknownKeyError):
        await old_store.read_events(run.run_id, after=3)


async def test_second_streaming_run_on_a_thread_conflicts(store: Store) -> None:
    workspace_id = await store.ensure_workspace("acme")
    thread = await store.create_thread(workspace_id, None)
    await store.create_run(thread, writer_id="w1", lease_s=10)
    with pytest.raises(Conflict):
        await store.create_run(thread, writer_id="w1", lease_s=10)


async def test_another_workspaces_rows_are_not_found(store: Store) -> None:
    run = await _run(store)
    intruder = await store.ensure_workspace("intruder")
    with pytest.raises(NotFound):
        await store.get_run(intruder, run.run_id)
    with pytest.raises(NotFound):
        await store.get_thread(intruder, run.thread_id)
    with pytest.raises(NotFound):
        await store.get_run(WorkspaceId(new_id()), RunId(new_id()))
    assert (await store.get_thread(run.workspace_id, ThreadId(run.thread_id))).title == "a thread"


async def test_messages_are_stored_encrypted_and_listed_in_order(store: Store) -> None:
    run = await _run(store)
    said = [
        ChatMessage(role="user", content="how many orders?"),
        ChatMessage(role="assistant", content="42 orders"),
    ]
    async with store.transaction() as conn:
        await store.insert_messages(conn, run.thread_id, run.run_id, said[:1])
    async with store.transaction() as conn:
        await store.insert_messages(conn, run.thread_id, run.run_id, said[1:])
    listed = await store.list_messages(run.thread_id)
    assert [m.message for m in listed] == said
    assert [m.position for m in listed] == [1, 2]
    async with store.engine.connect() as conn:
        contents = (await conn.execute(sa.text("SELECT content FROM messages"))).scalars().all()
    assert all(b"orders" not in c for c in contents)


async def test_append_notifies_run_and_last_seq_on_commit(store: Store, database_url: str) -> None:
    import asyncio

    import asyncpg

    from broker.store.notify import NOTIFY_CHANNEL, parse_notify

    run = await _run(store)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    listener = await asyncpg.connect(dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        await store.append_events(_texts(run.run_id, 2, 3))
        payload = await asyncio.wait_for(received.get(), timeout=5)
        assert parse_notify(payload) == (run.run_id, 4)
        assert parse_notify("garbage") is None
    finally:
        await listener.close()
