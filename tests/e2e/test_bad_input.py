"""Issue 8's small items, each for its whole kind: bad input gets the contract's answer.

Every case runs against a real broker on loopback and checks the error shape
`{"error": {"code", "message"}}`, and that not a row was written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from broker.store.postgres import Store
from broker.web.settings import Settings
from tests.e2e.producer_harness import Stack, broker_and_agent, row_counts
from tests.fakes.agent import complete

MAX_BODY = 4096


@pytest.fixture
async def stack(settings: Settings, store: Store) -> AsyncIterator[Stack]:
    async with broker_and_agent(settings, store, max_body_bytes=MAX_BODY) as stack:
        yield stack


async def _expect(
    stack: Stack, status: int, code: str, method: str, path: str, **request: Any
) -> httpx.Response:
    before = await row_counts(stack.store)
    answer = await stack.client.request(method, path, **request)
    assert answer.status_code == status, (path, answer.text)
    error = answer.json()["error"]
    assert error["code"] == code and error["message"], (path, error)
    assert await row_counts(stack.store) == before, path
    return answer


def _json(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


async def test_a_non_ascii_bearer_token_is_401_in_the_error_shape(stack: Stack) -> None:
    thread_id = await stack.new_thread()
    for token in ("é.é", "é", "ü.x.y", "\u00ff" * 300):
        header = {"Authorization": f"Bearer {token}".encode()}
        for method, path in (
            ("POST", "/api/threads"),
            ("POST", f"/api/threads/{thread_id}/runs"),
            ("GET", "/api/integrations"),
            ("GET", f"/api/threads/{thread_id}/messages"),
        ):
            answer = await _expect(stack, 401, "unauthorized", method, path, headers=header)
            assert answer.headers["content-type"] == "application/json"
    cookie = {"Cookie": "broker_session=é.é".encode()}
    anonymous = httpx.AsyncClient(base_url=str(stack.client.base_url))
    async with anonymous:
        answer = await anonymous.get("/api/integrations", headers=cookie)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    "text",
    [
        b'"a\\ud800b"',  # a lone high surrogate, escaped
        b'"a\\uDC00b"',  # a lone low surrogate, upper-case escape
        b'"\\udc00\\ud800"',  # both halves, in the wrong order
        b'"a\xed\xa0\x80b"',  # the raw (invalid) UTF-8 bytes of one
    ],
)
async def test_a_lone_surrogate_in_any_json_string_is_422(stack: Stack, text: bytes) -> None:
    thread_id = await stack.new_thread()
    for path, body in (
        (f"/api/threads/{thread_id}/runs", b'{"message": ' + text + b"}"),
        ("/api/threads", b'{"title": ' + text + b"}"),
        ("/api/threads", b'{"ignored": {"deep": [' + text + b"]}}"),
        ("/api/integrations", b'{"kind": "postgres", "name": ' + text + b', "credentials": {}}'),
        (f"/api/runs/{thread_id}/subscribe", b'{"cursor": ' + text + b"}"),
    ):
        await _expect(stack, 422, "validation_error", "POST", path, **_json(body))


async def test_a_surrogate_pair_is_ordinary_text(stack: Stack) -> None:
    stack.fake.script("smile \U0001f600", complete("ok"))
    thread_id = await stack.new_thread()
    answer = await stack.client.post(
        f"/api/threads/{thread_id}/runs", **_json(b'{"message": "smile \\ud83d\\ude00"}')
    )
    assert answer.status_code == 202, answer.text


async def test_a_body_that_is_not_json_is_400_invalid_json_on_every_route(stack: Stack) -> None:
    thread_id = await stack.new_thread()
    for path in (
        "/api/threads",
        f"/api/threads/{thread_id}/runs",
        "/api/integrations",
        f"/api/runs/{thread_id}/subscribe",
    ):
        for body in (b"{nope", b"not json", b'{"message": "x"', b"\xff\xfe", b"[1,]"):
            await _expect(stack, 400, "invalid_json", "POST", path, **_json(body))


async def test_a_chunked_body_over_the_limit_is_413(stack: Stack) -> None:
    thread_id = await stack.new_thread()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(4):
            yield b"x" * 2048
        yield b'"}'

    for path in ("/api/threads", f"/api/threads/{thread_id}/runs", "/api/integrations"):
        answer = await _expect(stack, 413, "payload_too_large", "POST", path, content=chunks())
        assert answer.request.headers.get("transfer-encoding") == "chunked"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_query_string_is_never_logged_in_full(stack: Stack) -> None:
    secret = "tok3n-that-must-not-be-logged"
    access = logging.getLogger("uvicorn.access")
    records, level = _Records(), access.level
    access.addHandler(records)
    access.setLevel(logging.INFO)
    try:
        thread_id = await stack.new_thread()
        for path in (
            f"/api/threads/{thread_id}/messages?token={secret}",
            f"/api/runs/{thread_id}/events?cursor=1&token={secret}",
            f"/login?code={secret}",
            f"/nowhere?x={secret}&token",
        ):
            await stack.client.get(path)
    finally:
        access.removeHandler(records)
        access.setLevel(level)
    assert len(records.lines) >= 5
    assert not [line for line in records.lines if secret in line]
    assert any("token=[redacted]" in line for line in records.lines)


async def test_text_postgresql_cannot_store_is_422_not_500(stack: Stack) -> None:
    dsn = '"credentials": {"dsn": "postgresql://u@db.example/d"}'
    for name in ("a\\u0000b", "\\u0000"):
        body = f'{{"kind": "postgres", "name": "{name}", {dsn}}}'.encode()
        await _expect(stack, 422, "validation_error", "POST", "/api/integrations", **_json(body))
