"""Content negotiation, the run and transcript endpoints, and bad input, over a real server."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.store.records import RunRecord
from broker.web.auth import mint_token
from broker.web.settings import Settings
from models.events import (
    ReasoningText,
    TextData,
    ToolResult,
    ToolResultData,
    ToolUse,
    ToolUseData,
)
from tests.e2e.test_subscribe_support import (
    append_texts,
    finish_run,
    hub_of,
    new_run,
    pending,
    running_broker,
    token_for,
    until,
)


def url_of(run: RunRecord) -> str:
    return f"/api/runs/{run.run_id}/subscribe"


async def test_ndjson_streams_the_same_events_one_per_line(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = {**token_for(settings, run), "Accept": "application/x-ndjson"}
    async with (
        running_broker(settings) as (_, client),
        client.stream("POST", url_of(run), headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = response.aiter_lines()
        first = json.loads(await anext(lines))
        assert (first["seq"], first["event_type"]) == (1, "run_started")
        # Still streaming: the next lines are written while we read.
        await append_texts(store, run.run_id, 2, 2)
        assert json.loads(await anext(lines))["seq"] == 2
        await finish_run(store, run, 4)
        rest = [json.loads(line) async for line in lines if line]
    assert [event["seq"] for event in rest] == [3, 4]
    assert rest[-1]["event_type"] == "complete"
    assert set(rest[0]) == {"seq", "event_type", "data", "ts"}


async def test_json_waits_for_the_terminal_event(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    async with running_broker(settings) as (app, client):
        answer = asyncio.create_task(client.post(url_of(run), headers=headers))
        await until(lambda: hub_of(app).viewer_count == 1, "the request to be waiting")
        await append_texts(store, run.run_id, 2, 3)
        await asyncio.sleep(0.2)  # give a wrong implementation the chance to answer early
        assert not answer.done()
        await finish_run(store, run, 5)
        document = (await answer).json()
    assert [event["seq"] for event in document["events"]] == [1, 2, 3, 4, 5]
    assert document["run"]["status"] == "completed"
    assert document["run"]["last_seq"] == 5
    assert document["run"]["run_id"] == str(run.run_id)


async def test_json_with_wait_false_answers_at_once(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 2)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    async with running_broker(settings) as (app, client):
        async with asyncio.timeout(5):
            answer = await client.post(
                url_of(run), params={"wait": "false"}, json={"cursor": "1"}, headers=headers
            )
        document = answer.json()
        assert [event["seq"] for event in document["events"]] == [2, 3]
        assert document["run"]["status"] == "streaming"
        assert hub_of(app).tail_count == 0


async def finished_with_tools(store: Store) -> RunRecord:
    run = await new_run(store)
    await store.append_events(
        [
            pending(run.run_id, 2, ReasoningText(data=TextData(text="Look it up."))),
            pending(
                run.run_id,
                3,
                ToolUse(data=ToolUseData(tool_use_id="tu1", name="query", input={"q": 1})),
            ),
            pending(
                run.run_id,
                4,
                ToolResult(data=ToolResultData(tool_use_id="tu1", output={"rows": 7})),
            ),
        ]
    )
    await append_texts(store, run.run_id, 5, 2)
    await finish_run(store, run, 7)
    return run


@pytest.mark.parametrize(
    ("accept", "media_type", "expected"),
    [
        (
            "text/markdown",
            "text/markdown",
            ["**Status:** completed", "> Look it up.", "**Tool call** `query` (tu1)", '"rows": 7'],
        ),
        (
            "text/plain",
            "text/plain",
            ["[reasoning]\nLook it up.", "[tool call] query tu1", "t5 t6", "[run completed]"],
        ),
        ("application/json;q=0.5, text/plain", "text/plain", ["[tool result] tu1"]),
    ],
)
async def test_transcripts_render_reasoning_tools_and_the_answer(
    settings: Settings, store: Store, accept: str, media_type: str, expected: list[str]
) -> None:
    run = await finished_with_tools(store)
    headers = {**token_for(settings, run), "Accept": accept}
    async with running_broker(settings) as (_, client):
        answer = await client.post(url_of(run), headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    for piece in expected:
        assert piece in answer.text


async def test_the_run_and_its_transcript(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    await append_texts(store, run.run_id, 2, 2)
    headers = token_for(settings, run)
    async with running_broker(settings) as (_, client):
        view = (await client.get(f"/api/runs/{run.run_id}", headers=headers)).json()
        assert view == {
            "run_id": str(run.run_id),
            "thread_id": str(run.thread_id),
            "status": "streaming",
            "last_seq": 3,
            "created_at": view["created_at"],
            "finished_at": None,
            "error": None,
        }
        await finish_run(store, run, 4, answer="all done")
        view = (await client.get(f"/api/runs/{run.run_id}", headers=headers)).json()
        assert (view["status"], view["last_seq"]) == ("completed", 4)
        assert view["finished_at"] is not None
        listed = await client.get(f"/api/threads/{run.thread_id}/messages", headers=headers)
    messages = listed.json()["messages"]
    assert [(m["position"], m["role"], m["content"]) for m in messages] == [
        (1, "user", "the question"),
        (2, "assistant", "all done"),
    ]
    assert all(m["run_id"] == str(run.run_id) and m["id"] and m["created_at"] for m in messages)


def error_of(answer: httpx.Response) -> tuple[int, str]:
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return answer.status_code, body["error"]["code"]


async def test_bad_input_gets_the_contracts_error_and_changes_nothing(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    other = await new_run(store, workspace="someone-else")
    headers = token_for(settings, run)
    post = url_of(run)
    get = f"/api/runs/{run.run_id}/events"
    bearer = headers
    json_body = {**bearer, "Content-Type": "application/json"}
    cases: list[tuple[int, str, str, str, dict[str, Any]]] = [
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": "-1"}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": "1.5"}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": " 3"}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": "9" * 40}}),
        # A JSON integer is a cursor too (below); any other JSON type is not.
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": -1}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": 1.5}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": 2.0}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": True}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": [3]}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": {"seq": 3}}}),
        (400, "invalid_cursor", "POST", post, {"json": {"cursor": 2**31}}),
        (400, "invalid_cursor", "GET", get, {"params": {"cursor": "abc"}}),
        (400, "invalid_cursor", "GET", get, {"headers": {**bearer, "Last-Event-ID": "x"}}),
        (404, "not_found", "POST", f"/api/runs/{uuid.uuid4()}/subscribe", {}),
        (404, "not_found", "POST", "/api/runs/not-a-uuid/subscribe", {}),
        (404, "not_found", "POST", url_of(other), {}),
        (404, "not_found", "GET", f"/api/runs/{other.run_id}/events", {}),
        (404, "not_found", "GET", f"/api/runs/{other.run_id}", {}),
        (404, "not_found", "GET", f"/api/runs/{uuid.uuid4()}", {}),
        (404, "not_found", "GET", f"/api/threads/{other.thread_id}/messages", {}),
        (404, "not_found", "GET", "/api/threads/nope/messages", {}),
        (401, "unauthorized", "POST", post, {"headers": {}}),
        (401, "unauthorized", "GET", get, {"headers": {}}),
        (401, "unauthorized", "GET", f"/api/runs/{run.run_id}", {"headers": {}}),
        (401, "unauthorized", "POST", post, {"headers": {"Authorization": "Bearer forged.sig"}}),
        (406, "not_acceptable", "POST", post, {"headers": {**bearer, "Accept": "image/png"}}),
        (406, "not_acceptable", "GET", get, {"headers": {**bearer, "Accept": "text/html"}}),
        (400, "invalid_json", "POST", post, {"content": b"{nope", "headers": json_body}),
        (422, "validation_error", "POST", post, {"json": {"cursr": "5"}}),
        (422, "validation_error", "POST", post, {"params": {"wait": "maybe"}}),
    ]
    async with running_broker(settings) as (app, client):
        for status, code, method, url, options in cases:
            options.setdefault("headers", bearer)
            answer = await client.request(method, url, **options)
            assert error_of(answer) == (status, code), (method, url, options)
        assert (hub_of(app).tail_count, hub_of(app).viewer_count) == (0, 0)
    # Nothing was written: the run is as it was created.
    assert (await store.get_run_state(run.workspace_id, run.run_id)).head == 1


async def test_an_empty_body_or_null_cursor_means_from_the_start(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    await finish_run(store, run, 2)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    async with running_broker(settings) as (_, client):
        assert [
            e["seq"] for e in (await client.post(url_of(run), headers=headers)).json()["events"]
        ] == [1, 2]
        json_headers = {**headers, "Content-Type": "application/json"}
        for body in (
            b"",
            b"null",
            b"{}",
            b'{"cursor": null}',
            b'{"cursor": "0"}',
            b'{"cursor": 0}',
        ):
            answer = await client.post(url_of(run), content=body, headers=json_headers)
            assert [e["seq"] for e in answer.json()["events"]] == [1, 2], body
        # The numeric seq a client saw is accepted as it is, like its decimal string.
        for body in (b'{"cursor": 1}', b'{"cursor": "1"}'):
            answer = await client.post(url_of(run), content=body, headers=json_headers)
            assert [e["seq"] for e in answer.json()["events"]] == [2], body


async def test_a_token_for_another_workspace_sees_nothing(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    stranger = await store.ensure_workspace("stranger")
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), stranger)
    async with running_broker(settings) as (_, client):
        answer = await client.post(url_of(run), headers={"Authorization": f"Bearer {token}"})
    assert error_of(answer) == (404, "not_found")
