"""Starting threads and runs over HTTP: the answers, and nothing written on bad input."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from models.ids import RunId, ThreadId
from tests.e2e.producer_harness import Stack, broker_and_agent, row_counts
from tests.fakes.agent import Gate, complete, text

MAX_MESSAGE = 64


async def _refused(
    stack: Stack,
    status: int,
    code: str,
    path: str,
    *,
    client: httpx.AsyncClient | None = None,
    **request: Any,
) -> httpx.Response:
    """POST `path`; expect the contract's error, and not a row written anywhere."""
    before = await row_counts(stack.store)
    answer = await (client or stack.client).post(path, **request)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert await row_counts(stack.store) == before
    return answer


async def test_create_thread_answers_201_with_the_thread(settings: Settings, store: Store) -> None:
    async with broker_and_agent(settings, store) as stack:
        answer = await stack.client.post("/api/threads", json={"title": "Orders"})
        assert answer.status_code == 201
        body = answer.json()
        assert set(body) == {"thread_id", "title", "created_at"}
        assert body["title"] == "Orders"
        thread = await store.get_thread(stack.workspace_id, ThreadId(uuid.UUID(body["thread_id"])))
        assert thread.title == "Orders"
        untitled = await stack.client.post("/api/threads")
        assert (untitled.status_code, untitled.json()["title"]) == (201, None)

        await _refused(stack, 422, "validation_error", "/api/threads", json={"title": "x" * 501})
        await _refused(stack, 422, "validation_error", "/api/threads", json={"title": "a\x00b"})
        await _refused(
            stack,
            400,
            "invalid_json",
            "/api/threads",
            content=b"{nope",
            headers={"content-type": "application/json"},
        )
        async with httpx.AsyncClient(base_url=str(stack.client.base_url)) as anonymous:
            await _refused(stack, 401, "unauthorized", "/api/threads", client=anonymous, json={})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": ""}, 422, "validation_error"),
        ({"message": "   \n\t"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"message": 42}, 422, "validation_error"),
        ({"message": None}, 422, "validation_error"),
        ({"message": "x" * (MAX_MESSAGE + 1)}, 413, "payload_too_large"),
        ({"message": "é" * (MAX_MESSAGE // 2 + 1)}, 413, "payload_too_large"),  # bytes, not chars
    ],
)
async def test_bad_run_bodies_are_refused_and_write_nothing(
    settings: Settings, store: Store, body: dict[str, Any], status: int, code: str
) -> None:
    async with broker_and_agent(settings, store, max_message_bytes=MAX_MESSAGE) as stack:
        thread_id = await stack.new_thread()
        await _refused(stack, status, code, f"/api/threads/{thread_id}/runs", json=body)
        assert stack.fake.calls == []


async def test_bad_credentials_threads_and_json_are_refused_and_write_nothing(
    settings: Settings, store: Store
) -> None:
    assert settings.secret is not None
    async with broker_and_agent(settings, store, max_body_bytes=4096) as stack:
        thread_id = await stack.new_thread()
        path = f"/api/threads/{thread_id}/runs"
        ok: dict[str, Any] = {"json": {"message": "hello"}}
        base = str(stack.client.base_url)

        async with httpx.AsyncClient(base_url=base) as anonymous:
            await _refused(stack, 401, "unauthorized", path, client=anonymous, **ok)
        forged = mint_token("another-secret-0123456789abcdef", stack.workspace_id)
        expired = mint_token(settings.secret.get_secret_value(), stack.workspace_id, ttl_s=-1)
        for token in ("garbage", forged, expired):
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}
            ) as stranger:
                await _refused(stack, 401, "unauthorized", path, client=stranger, **ok)

        elsewhere = await store.create_thread(await store.ensure_workspace("other"), "theirs")
        await _refused(stack, 404, "not_found", f"/api/threads/{elsewhere.thread_id}/runs", **ok)
        await _refused(stack, 404, "not_found", "/api/threads/not-a-uuid/runs", **ok)
        await _refused(
            stack,
            400,
            "invalid_json",
            path,
            content=b'{"message": "unterminated',
            headers={"content-type": "application/json"},
        )
        await _refused(stack, 413, "payload_too_large", path, json={"message": "x" * 5000})
        assert stack.fake.calls == []


async def test_a_second_run_on_a_streaming_thread_is_409_and_writes_nothing(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        gate = Gate()
        stack.fake.script("first", text("a"), gate, complete("a"))
        thread_id = await stack.new_thread()
        first = await stack.start_run(thread_id, "first")
        await gate.reached.wait()
        # "a" is on its way into the table; let it land so the row counts hold still.
        stream = stack.app.state.streams.get(RunId(uuid.UUID(first["run_id"])))
        await asyncio.wait_for(stream.wait_stored(2), 10)

        busy = await _refused(
            stack,
            409,
            "run_in_progress",
            f"/api/threads/{thread_id}/runs",
            json={"message": "second"},
        )
        error = busy.json()["error"]
        assert first["run_id"] in error["message"] and error["run_id"] == first["run_id"]
        assert "uq_" not in busy.text and "constraint" not in busy.text
        assert stack.fake.started("second") == []

        gate.open()
        assert await stack.finished(first["run_id"]) in ("stored", None)
        # Once the first run has finished, the thread takes a new one.
        stack.fake.script("second", complete("b"))
        second = await stack.start_run(thread_id, "second")
        await stack.finished(second["run_id"])
        assert (await stack.run_row(second["run_id"])).status == "completed"


async def test_start_run_answers_at_once_while_the_agent_is_still_working(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        gate = Gate()
        stack.fake.script("slow", gate, complete("done"))
        thread_id = await stack.new_thread()
        began = time.monotonic()
        started = await stack.start_run(thread_id, "slow")
        assert time.monotonic() - began < 2.0
        row = await stack.run_row(started["run_id"])
        assert (row.status, row.writer_id) == ("streaming", stack.app.state.writer_id)
        assert [e.event.event_type for e in await stack.events(started["run_id"])] == [
            "run_started"
        ]
        gate.open()
        await stack.finished(started["run_id"])
