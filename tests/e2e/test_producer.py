"""A run end to end: the broker consumes the (fake) agent's stream into PostgreSQL."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from broker.store.postgres import Store
from broker.web.capability import verify_capability
from broker.web.settings import Settings
from models.events import ChatMessage
from models.ids import ThreadId
from tests.e2e.producer_harness import broker_and_agent
from tests.fakes.agent import complete, event, text

QUESTION = "how many orders came in today?"
ANSWER = "There were 42 orders today."


async def test_a_run_stores_the_agents_events_in_order_and_completes_atomically(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        stack.fake.script(
            QUESTION,
            event("reasoning_text", text="Counting the orders."),
            event("tool_use", tool_use_id="t1", name="query", input={"sql": "SELECT 42"}),
            event("tool_result", tool_use_id="t1", output=[[42]], is_error=False),
            text("There were "),
            text("42 orders today."),
            complete(ANSWER),
        )
        thread_id = await stack.new_thread()
        started = await stack.start_run(thread_id, QUESTION, **{"X-Request-ID": "req-e2e-1"})
        run_id = started["run_id"]
        assert started == {
            "run_id": run_id,
            "thread_id": thread_id,
            "status": "streaming",
            "subscribe_url": f"/api/runs/{run_id}/subscribe",
        }
        assert await stack.finished(run_id) in ("stored", None)

        events = await stack.events(run_id)
        assert [e.seq for e in events] == list(range(1, 8))
        assert [e.event.event_type for e in events] == [
            "run_started",
            "reasoning_text",
            "tool_use",
            "tool_result",
            "text",
            "text",
            "complete",
        ]
        assert events[0].event.data.run_id == run_id  # type: ignore[union-attr]
        assert [e.event.data.text for e in events[4:6]] == [  # type: ignore[union-attr]
            "There were ",
            "42 orders today.",
        ]

        row = await stack.run_row(run_id)
        assert (row.status, row.last_seq, row.agent_cursor) == ("completed", 7, "6")
        assert row.finished_at is not None
        assert (row.writer_id, row.lease_expires_at) == (None, None)
        assert row.request_id == "req-e2e-1"

        transcript = await store.list_messages(ThreadId(uuid.UUID(thread_id)))
        assert [m.message for m in transcript] == [
            ChatMessage(role="user", content=QUESTION),
            ChatMessage(role="assistant", content=ANSWER),
        ]

        (call,) = stack.fake.started(QUESTION)
        assert settings.local_secret is not None
        assert call.headers["x-local-secret"] == settings.local_secret.get_secret_value()
        assert call.headers["x-request-id"] == "req-e2e-1"
        # The run's tools get a capability naming this run and its workspace, nothing wider.
        granted = verify_capability(
            settings.require(settings.secret, "BROKER_SECRET"), call.body.pop("capability")
        )
        assert str(granted.run_id) == run_id
        assert granted.workspace_id == stack.workspace_id
        assert call.body == {
            "run_id": run_id,
            "thread_id": thread_id,
            "history": [],
            "new_user_message": QUESTION,
            "integrations": [],
        }
        assert stack.metric("broker_events_received_total") == 6
        assert stack.metric("broker_events_flushed_total") == 6
        assert stack.metric("broker_events_dropped_total") == 0
        assert stack.metric("broker_active_producers") == 0

    async with store.engine.connect() as conn:
        payloads = (await conn.execute(sa.text("SELECT payload FROM raw_stream_events"))).scalars()
        contents = (await conn.execute(sa.text("SELECT content FROM messages"))).scalars()
        for blob in [*payloads, *contents]:
            for plaintext in (b"42 orders", b"orders came in", b"Counting", b"event_type"):
                assert plaintext not in blob


async def test_the_next_run_gets_the_transcript_and_the_workspaces_integrations(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        shop = await store.create_integration(
            stack.workspace_id, "postgres", "shop", {"password": "never sent"}
        )
        stack.fake.script(QUESTION, text("42"), complete(ANSWER))
        stack.fake.script("and yesterday?", text("7"), complete("Seven."))
        thread_id = await stack.new_thread()
        first = await stack.start_run(thread_id, QUESTION)
        await stack.finished(first["run_id"])
        second = await stack.start_run(thread_id, "and yesterday?")
        await stack.finished(second["run_id"])

        (call,) = stack.fake.started("and yesterday?")
        assert call.body is not None
        assert call.body["history"] == [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": ANSWER},
        ]
        assert call.body["integrations"] == [
            {"id": str(shop.integration_id), "kind": "postgres", "name": "shop"}
        ]
        assert "never sent" not in str(call.body)
        transcript = await store.list_messages(ThreadId(uuid.UUID(thread_id)))
        assert [m.message.content for m in transcript] == [
            QUESTION,
            ANSWER,
            "and yesterday?",
            "Seven.",
        ]
