"""`POST /api/runs/{run_id}/cancel` on one broker and the fake agent: the edge cases.

The cancel records the flag (and its NOTIFY); the run's producer stops the
agent and ends the run `cancelled`, its partial answer kept in the
transcript. Here: before the producer started (the agent is never called),
twice (the first member wins, one terminal event), after completion (200,
nothing changes), another workspace's or an unknown run (404), and the
cookie's same-origin check. The cross-replica case is
`tests/e2e/test_cancel_replicas.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from broker.store.postgres import Store
from broker.web.auth import COOKIE_NAME, mint_token
from broker.web.settings import Settings
from models.events import Cancelled, CancelledData, ChatMessage
from models.ids import RunId, ThreadId
from tests.e2e.producer_harness import Stack, broker_and_agent
from tests.fakes.agent import Gate, complete, text


def _token(stack: Stack, member: str) -> dict[str, str]:
    secret = stack.settings.require(stack.settings.secret, "BROKER_SECRET")
    return {"Authorization": f"Bearer {mint_token(secret, stack.workspace_id, member)}"}


async def _cancel(stack: Stack, run_id: str, **headers: str) -> httpx.Response:
    return await stack.client.post(f"/api/runs/{run_id}/cancel", headers=headers)


async def _transcript(stack: Stack, thread_id: str) -> list[tuple[str, str]]:
    answer = await stack.client.get(f"/api/threads/{thread_id}/messages")
    assert answer.status_code == 200, answer.text
    return [(m["role"], m["content"]) for m in answer.json()["messages"]]


async def _seen(stack: Stack, run_id: str, seq: int) -> None:
    """Wait until the run's rows reach `seq` (the manager's stream reports what is stored)."""
    stream = stack.app.state.streams.get(RunId(uuid.UUID(run_id)))
    assert stream is not None and await asyncio.wait_for(stream.wait_stored(seq), 10)


async def test_a_cancel_stops_the_agent_and_keeps_the_partial_answer_in_one_end(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        gate = Gate()
        stack.fake.script("write", text("Hel"), text("lo, "), gate, text("never"), complete("x"))
        thread_id = await stack.new_thread()
        run_id = (await stack.start_run(thread_id, "write"))["run_id"]
        await _seen(stack, run_id, 3)
        first = await _cancel(stack, run_id, **_token(stack, "alice"))
        second = await _cancel(stack, run_id, **_token(stack, "bob"))
        assert await stack.finished(run_id) in ("stored", None)
        later = await _cancel(stack, run_id, **_token(stack, "carol"))
        events = await stack.events(run_id)
        row = await stack.run_row(run_id)
        transcript = await _transcript(stack, thread_id)
        # The agent was told once; the gate never opened, so "never" was never sent.
        assert stack.fake.cancelled == [run_id]

    # Idempotent: while the run is active each request is accepted (the first member
    # wins); once it ended, its final status.
    assert (first.status_code, first.json()) == (202, {"run_id": run_id, "status": "streaming"})
    assert second.status_code in (200, 202)
    assert (later.status_code, later.json()) == (200, {"run_id": run_id, "status": "cancelled"})
    assert [e.event.event_type for e in events] == ["run_started", "text", "text", "cancelled"]
    assert events[-1].event == Cancelled(data=CancelledData(by="alice"))
    assert (row.status, row.aborted_by, row.writer_id) == ("cancelled", "alice", None)
    assert row.abort_requested_at is not None and row.finished_at is not None
    # The partial answer is the text the viewers saw, kept as the run's assistant message.
    assert transcript == [("user", "write"), ("assistant", "Hello, ")]


async def test_a_cancel_recorded_before_the_producer_starts_never_calls_the_agent(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        stack.fake.script("early", text("a"), complete("a"))
        thread_id = ThreadId(uuid.UUID(await stack.new_thread()))
        thread = await store.get_thread(stack.workspace_id, thread_id)
        # The run exists, leased to this broker, but its producer has not started yet.
        run = await store.create_run(
            thread,
            writer_id=stack.app.state.writer_id,
            lease_s=10,
            message=ChatMessage(role="user", content="early"),
        )
        answer = await _cancel(stack, str(run.run_id))
        assert (answer.status_code, answer.json()["status"]) == (202, "streaming")
        await asyncio.sleep(0.2)  # its wake-up has come and gone: no producer to tell
        assert stack.app.state.producers.start(run, "early", request_id="r-early")
        assert await stack.finished(str(run.run_id)) == "stored"
        events = await stack.events(str(run.run_id))
        row = await stack.run_row(str(run.run_id))

    assert stack.fake.calls == []
    assert [e.event for e in events[1:]] == [Cancelled(data=CancelledData(by="owner"))]
    assert row.status == "cancelled"


async def test_a_finished_run_answers_its_final_status_and_changes_nothing(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        stack.fake.script("done", text("ok"), complete("ok"))
        thread_id = await stack.new_thread()
        run_id = (await stack.start_run(thread_id, "done"))["run_id"]
        await stack.finished(run_id)
        answers = [await _cancel(stack, run_id) for _ in range(2)]
        events = await stack.events(run_id)
        row = await stack.run_row(run_id)

    for answer in answers:
        assert (answer.status_code, answer.json()) == (
            200,
            {"run_id": run_id, "status": "completed"},
        )
    assert events[-1].event.event_type == "complete" and len(events) == 3
    assert (row.status, row.abort_requested_at, row.aborted_by) == ("completed", None, None)
    assert stack.fake.cancelled == []


async def test_another_workspaces_or_an_unknown_run_is_not_found_and_untouched(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        gate = Gate()
        stack.fake.script("theirs", text("a"), gate, complete("a"))
        run_id = (await stack.start_run(await stack.new_thread(), "theirs"))["run_id"]
        secret = settings.require(settings.secret, "BROKER_SECRET")
        stranger = mint_token(secret, await store.ensure_workspace("someone-else"), "mallory")
        cases: list[tuple[str, dict[str, str], int, str]] = [
            (run_id, {"Authorization": f"Bearer {stranger}"}, 404, "not_found"),
            (str(uuid.uuid4()), {}, 404, "not_found"),
            ("not-a-uuid", {}, 404, "not_found"),
            (run_id, {"Authorization": "Bearer forged.sig"}, 401, "unauthorized"),
        ]
        answers: list[tuple[int, Any]] = []
        for target, headers, _, _ in cases:
            answer = await _cancel(stack, target, **headers)
            answers.append((answer.status_code, answer.json()["error"]["code"]))
        row = await stack.run_row(run_id)
        gate.open()
        assert await stack.finished(run_id) == "stored"
        final = await stack.run_row(run_id)

    assert answers == [(status, code) for _, _, status, code in cases]
    assert (row.abort_requested_at, row.aborted_by) == (None, None)
    assert final.status == "completed"
    assert stack.fake.cancelled == []


async def test_a_cookie_cancel_passes_the_same_origin_check(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        gate = Gate()
        stack.fake.script("page", text("a"), gate, complete("a"))
        run_id = (await stack.start_run(await stack.new_thread(), "page"))["run_id"]
        secret = settings.require(settings.secret, "BROKER_SECRET")
        cookie = {"Cookie": f"{COOKIE_NAME}={mint_token(secret, stack.workspace_id, 'page')}"}
        async with httpx.AsyncClient(base_url=str(stack.client.base_url)) as browser:
            url = f"/api/runs/{run_id}/cancel"
            foreign = await browser.post(url, headers={**cookie, "Sec-Fetch-Site": "cross-site"})
            bare = await browser.post(url, headers=cookie)
            untouched = await stack.run_row(run_id)
            own = await browser.post(url, headers={**cookie, "Sec-Fetch-Site": "same-origin"})
        assert await stack.finished(run_id) in ("stored", None)
        events = await stack.events(run_id)

    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "cross_origin")
    assert (bare.status_code, bare.json()["error"]["code"]) == (403, "cross_origin")
    assert untouched.abort_requested_at is None
    assert own.status_code == 202
    assert events[-1].event == Cancelled(data=CancelledData(by="page"))
