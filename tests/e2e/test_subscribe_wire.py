"""What the read side puts on the wire: line-split-safe JSON and keepalives for every format."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from broker.store.postgres import Store
from broker.store.records import PendingEvent, RunRecord
from broker.web.settings import Settings
from broker.web.wirejson import WireJSONResponse, dumps
from models.events import Text, TextData
from tests.e2e.test_subscribe_support import (
    append_texts,
    finish_run,
    new_run,
    running_broker,
    token_for,
)

# Every character a line-splitting client (str.splitlines) breaks on that JSON may hold raw.
TRICKY = "a\u2028b\u2029c\u0085d\x1ce\x1df\x1eg\x0bh\x0ci\rj\nk"
RAW_BREAKERS = ("\u2028", "\u2029", "\u0085")


def test_dumps_escapes_the_three_line_breakers_and_keeps_the_value() -> None:
    text = dumps({"text": TRICKY, "é": "ünïcode"})
    assert not any(breaker in text for breaker in RAW_BREAKERS)
    assert len(text.splitlines()) == 1
    assert json.loads(text) == {"text": TRICKY, "é": "ünïcode"}
    assert "ünïcode" in text  # other non-ASCII stays raw UTF-8


def test_the_json_response_refuses_nan_like_starlettes() -> None:
    with pytest.raises(ValueError):
        WireJSONResponse({"x": float("nan")})


async def _finished_run_with_tricky_text(store: Store) -> RunRecord:
    run = await new_run(store)
    event = Text(data=TextData(text=TRICKY))
    await store.append_events([PendingEvent(run.run_id, 2, event, datetime.now(UTC))])
    await finish_run(store, run, 3, answer=f"done {TRICKY}")
    return run


async def test_u2028_inside_an_event_survives_a_line_splitting_ndjson_client(
    settings: Settings, store: Store
) -> None:
    run = await _finished_run_with_tricky_text(store)
    headers = {**token_for(settings, run), "Accept": "application/x-ndjson"}
    async with (
        running_broker(settings) as (_, client),
        client.stream("POST", f"/api/runs/{run.run_id}/subscribe", headers=headers) as answer,
    ):
        lines = [line async for line in answer.aiter_lines() if line]
    events = [json.loads(line) for line in lines]
    assert [event["seq"] for event in events] == [1, 2, 3]
    assert events[1]["data"]["text"] == TRICKY
    assert events[2]["data"]["new_messages"][0]["content"] == f"done {TRICKY}"


async def test_u2028_inside_an_event_survives_a_line_splitting_sse_client(
    settings: Settings, store: Store
) -> None:
    run = await _finished_run_with_tricky_text(store)
    headers = token_for(settings, run)
    async with (
        running_broker(settings) as (_, client),
        client.stream("GET", f"/api/runs/{run.run_id}/events", headers=headers) as answer,
    ):
        lines = [line async for line in answer.aiter_lines()]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    assert [event["seq"] for event in data] == [1, 2, 3]
    assert data[1]["data"]["text"] == TRICKY
    # Every line is a field, a comment or a block's end: nothing was cut in two.
    assert all(not line or line.split(":", 1)[0] in {"", "id", "data", "retry"} for line in lines)


async def test_json_answers_and_error_bodies_carry_no_raw_line_breakers(
    settings: Settings, store: Store
) -> None:
    run = await _finished_run_with_tricky_text(store)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    async with running_broker(settings) as (_, client):
        document = await client.post(f"/api/runs/{run.run_id}/subscribe", headers=headers)
        # An unknown id is echoed in the 404's message: the error body is JSON too.
        missing = await client.get(f"/api/runs/x{TRICKY[:6]}y", headers=headers)
    for answer in (document, missing):
        assert not any(breaker.encode() in answer.content for breaker in RAW_BREAKERS)
        assert len(answer.text.splitlines()) == 1
    assert document.json()["events"][1]["data"]["text"] == TRICKY
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert TRICKY[:6] in missing.json()["error"]["message"]


async def test_an_idle_ndjson_stream_carries_empty_line_keepalives(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = {**token_for(settings, run), "Accept": "application/x-ndjson"}
    url = f"/api/runs/{run.run_id}/subscribe"
    async with (
        running_broker(settings, keepalive_s=0.1) as (_, client),
        client.stream("POST", url, headers=headers) as answer,
    ):
        reader = answer.aiter_lines()
        lines: list[str] = []
        while lines.count("") < 3:
            lines.append(await anext(reader))
        await append_texts(store, run.run_id, 2, 1)
        await finish_run(store, run, 3)
        lines += [line async for line in reader]
    assert lines[0] and json.loads(lines[0])["seq"] == 1
    assert lines[1:4] == ["", "", ""]
    assert [json.loads(line)["seq"] for line in lines if line] == [1, 2, 3]


async def test_a_waiting_json_answer_sends_whitespace_keepalives_and_still_parses(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    url = f"/api/runs/{run.run_id}/subscribe"
    async with (
        running_broker(settings, keepalive_s=0.1) as (_, client),
        client.stream("POST", url, headers=headers) as answer,
    ):
        chunks = answer.aiter_raw()
        body = b""
        while body.count(b" ") < 3:
            body += await anext(chunks)
        assert body.strip() == b""  # nothing but keepalives while the run streams
        await append_texts(store, run.run_id, 2, 2)
        await finish_run(store, run, 4)
        async with asyncio.timeout(10):
            body += b"".join([chunk async for chunk in chunks])
    assert body.startswith(b"   ")
    document = json.loads(body)
    assert [event["seq"] for event in document["events"]] == [1, 2, 3, 4]
    assert document["run"]["status"] == "completed"


async def test_a_json_answer_for_a_finished_run_has_no_keepalive(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    await finish_run(store, run, 2)
    headers = {**token_for(settings, run), "Accept": "application/json"}
    async with running_broker(settings, keepalive_s=0.05) as (_, client):
        answer = await client.post(f"/api/runs/{run.run_id}/subscribe", headers=headers)
    assert answer.content.startswith(b'{"run":')
    assert httpx.Response(200, content=answer.content).json()["run"]["status"] == "completed"
