"""`RacingStreamResponse` and `HandOffMiddleware` at the ASGI level: what is sent, and when.

The response runs its body in the caller's task and stops it on the client's
disconnect or the drain; the streams over a real server are in
`tests/e2e/test_subscribe_*`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from broker.errors import BrokerError, DatabaseUnavailable, NotFound
from broker.web.draining import Drain
from broker.web.http import HAND_OFF, HandOffMiddleware
from subscribe.response import RacingStreamResponse


class Peer:
    """The server's side of one request: the request, then a disconnect when told."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.progress = asyncio.Event()
        self._gone = asyncio.Event()
        self._requested = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.progress.set()

    def disconnect(self) -> None:
        self._gone.set()

    def status(self) -> int:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        status: int = starts[0]["status"]
        return status

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def ended(self) -> bool:
        last = self.sent[-1]
        return last["type"] == "http.response.body" and not last.get("more_body", False)


def scope() -> Scope:
    return {"type": "http", "method": "GET", "path": "/", "headers": []}


class Body:
    """A body that yields `chunks`, then raises `fail` or waits until `release`d."""

    def __init__(self, *chunks: bytes, fail: BrokerError | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.log: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> AsyncGenerator[bytes, None]:
        self.log.append("started")
        self.started.set()
        try:
            for chunk in self.chunks:
                yield chunk
            if self.fail is not None:
                raise self.fail
            await self.release.wait()
        finally:
            self.log.append("closed")


def response(body: Body, drain: Drain | None = None) -> RacingStreamResponse:
    return RacingStreamResponse(body(), media_type="text/event-stream", drain=drain)


async def until_sent(peer: Peer, count: int) -> None:
    async with asyncio.timeout(5):
        while len(peer.sent) < count:
            peer.progress.clear()
            await peer.progress.wait()


async def test_a_broker_error_before_the_first_chunk_is_the_contracts_error_answer() -> None:
    peer, body = Peer(), Body(fail=NotFound("run 'x' not found"))
    await response(body)(scope(), peer.receive, peer.send)
    assert peer.status() == 404
    assert json.loads(peer.body())["error"]["code"] == "not_found"
    assert body.log == ["started", "closed"]


async def test_a_broker_error_after_the_first_chunk_ends_the_stream_cleanly() -> None:
    peer, body = Peer(), Body(b"one", fail=DatabaseUnavailable("gone"))
    await response(body)(scope(), peer.receive, peer.send)
    assert peer.status() == 200
    assert peer.body() == b"one"
    assert peer.ended()


async def test_a_disconnect_stops_a_waiting_body_at_once_and_closes_it() -> None:
    peer, body = Peer(), Body(b"one")
    serving = asyncio.create_task(response(body)(scope(), peer.receive, peer.send))
    await until_sent(peer, 2)
    peer.disconnect()
    async with asyncio.timeout(5):
        await serving  # ends without an error: the client is gone, nothing to answer
    assert body.log == ["started", "closed"]
    assert not serving.cancelled()


async def test_a_body_that_ends_ends_the_response_and_its_watch() -> None:
    peer, body = Peer(), Body(b"one")
    body.release.set()
    tasks_before = len(asyncio.all_tasks())
    await response(body)(scope(), peer.receive, peer.send)
    assert peer.body() == b"one"
    assert peer.ended()
    assert len(asyncio.all_tasks()) == tasks_before  # the disconnect watch is gone too


async def test_a_cancellation_from_outside_still_propagates_and_closes_the_body() -> None:
    peer, body = Peer(), Body(b"one")
    serving = asyncio.create_task(response(body)(scope(), peer.receive, peer.send))
    await until_sent(peer, 2)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert body.log == ["started", "closed"]


async def test_the_drain_ends_a_started_stream_cleanly() -> None:
    peer, body, drain = Peer(), Body(b"one"), Drain()
    serving = asyncio.create_task(response(body, drain)(scope(), peer.receive, peer.send))
    await until_sent(peer, 2)
    drain.begin()
    async with asyncio.timeout(5):
        await serving
    assert peer.status() == 200
    assert peer.body() == b"one"
    assert peer.ended()
    assert body.log == ["started", "closed"]


async def test_the_drain_refuses_a_stream_that_had_not_started() -> None:
    peer, body, drain = Peer(), Body(), Drain()
    serving = asyncio.create_task(response(body, drain)(scope(), peer.receive, peer.send))
    async with asyncio.timeout(5):
        await body.started.wait()
    drain.begin()
    async with asyncio.timeout(5):
        await serving
    assert peer.status() == 503
    assert json.loads(peer.body())["error"]["code"] == "shutting_down"
    assert body.log == ["started", "closed"]


async def test_once_draining_a_new_stream_is_refused_without_running_its_body() -> None:
    peer, body, drain = Peer(), Body(b"one"), Drain()
    drain.begin()
    await response(body, drain)(scope(), peer.receive, peer.send)
    assert peer.status() == 503
    start = next(m for m in peer.sent if m["type"] == "http.response.start")
    assert (b"retry-after", b"1") in start["headers"]
    assert body.log == []


async def test_a_handed_off_stream_runs_after_the_app_returned_with_the_scope_it_came_with() -> (
    None
):
    order: list[str] = []
    body = Body(b"one")
    body.release.set()

    async def app(inner: Scope, receive: Receive, send: Send) -> None:
        inner["route"] = "the app's own"
        await response(body)(inner, receive, send)
        assert order == []  # handed off: nothing ran, nothing was sent
        order.append("app returned")

    async def outer_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            order.append("response started")
        await peer.send(message)

    peer = Peer()
    given: dict[str, Any] = scope()
    await HandOffMiddleware(app)(given, peer.receive, outer_send)
    assert order == ["app returned", "response started"]
    assert peer.body() == b"one"
    assert peer.ended()
    assert "route" not in given
    assert HAND_OFF not in given


async def test_without_a_hand_off_the_app_runs_as_it_is() -> None:
    async def app(inner: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    peer = Peer()
    await HandOffMiddleware(app)(scope(), peer.receive, peer.send)
    assert peer.status() == 204


async def test_a_receive_that_fails_stops_the_body_and_its_error_reaches_the_server() -> None:
    body = Body(b"one")
    peer = Peer()

    async def failing_receive() -> Message:
        await until_sent(peer, 2)  # fails once the stream is under way
        raise OSError("the transport is broken")

    with pytest.raises(OSError, match="transport is broken"):
        async with asyncio.timeout(5):
            await response(body)(scope(), failing_receive, peer.send)
    assert body.log == ["started", "closed"]
