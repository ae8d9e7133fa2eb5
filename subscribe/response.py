"""A streaming response raced against the client's disconnect, whatever the server.

A viewer blocked waiting for the next event writes nothing, so a vanished
client would only be noticed at the next keepalive. This response runs the
body in the request's own task and waits for the ASGI `http.disconnect` in
one more (the only task an idle viewer adds); a disconnect cancels the
body, the body's end cancels the watcher, and the body iterator is closed
in every case, so a viewer's `finally` (leaving its tail) runs as soon as
the client goes. Starlette's `StreamingResponse` does this only below ASGI
spec 2.4; here it is explicit (STYLE 10). The cancellation is withdrawn
once it has stopped the body, as `asyncio.timeout` does, so a cancellation
from outside (the server's) still propagates.

The start of the response is sent with the first chunk, so a body that
waits (the `application/json` answer waits for the terminal event) still
notices a disconnect, and a broker error before the first chunk (the
database unavailable: 503) is answered in the contract's shape rather than
as a broken stream; after it, the stream just ends.

Under `HandOffMiddleware` (the app's) the response does not stream where it
is called: it hands itself off and runs once the routing and the
middlewares beneath have returned, so an idle stream does not keep their
frames, FastAPI's request or its exit stacks (issue 13). The app's
exception handlers are then no longer around it, hence the errors above are
answered here.

The process's `Drain` (shutdown signal) stops the body the same way, through
a callback rather than a task per viewer: the body is closed and the
response ends cleanly (the chunked body terminated, no traceback), so the
server is not left waiting for its graceful-shutdown timeout; the client
reconnects elsewhere with its cursor. A body that had not started yet (a
document waiting for the terminal event, or any answer once draining has
begun) is answered 503 `shutting_down` with `Retry-After` instead.

sse-starlette's `EventSourceResponse` was weighed for this: its shutdown
detection polls every 0.5 s and cancels the body without terminating the
response unless the body itself races a shutdown event, and it serves only
the SSE format; one race here covers every format.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.errors import BrokerError, ShuttingDown
from broker.web.draining import Drain
from broker.web.http import HAND_OFF, error_answer

__all__ = ["RacingStreamResponse"]

log = structlog.get_logger(__name__)


class RacingStreamResponse(Response):
    """Streams `content`; a client disconnect cancels it, a drain ends it cleanly."""

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.content = content
        self._drain = drain
        self._started = False
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hand_off: list[ASGIApp] | None = scope.get(HAND_OFF)
        if hand_off is not None:
            hand_off.append(self)  # run by `HandOffMiddleware` once the routing returned
            return
        if self._drain is not None and self._drain.draining:
            await self.content.aclose()
            await self._end_drained(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        stop = _Stop(task)
        watcher = asyncio.create_task(_watch(receive, stop.disconnected))
        if self._drain is not None:
            self._drain.on_begin(stop.drained)
        try:
            await self._stream(scope, receive, send)
        except asyncio.CancelledError:
            if stop.reason is None or task.cancelling() > 1:
                raise  # not (only) ours: the server's cancellation goes on
        finally:
            stop.disarm()
            if self._drain is not None:
                self._drain.forget(stop.drained)
            watcher.cancel()
            await asyncio.wait((watcher,))
        if not watcher.cancelled():
            watcher.result()  # a `receive` that failed is the server's to report
        if stop.reason is _Reason.DRAIN:
            await self._end_drained(scope, receive, send)

    async def _end_drained(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The drain stopped the body: end the response, or refuse it if nothing was sent."""
        log.info("stream_drained", started=self._started)
        if not self._started:
            await error_answer(ShuttingDown("the broker is shutting down; retry on another"))(
                scope, receive, send
            )
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with contextlib.aclosing(self.content) as content:
                async for chunk in content:
                    if not self._started:
                        await self._start(send)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    del chunk  # not kept while the body waits for the next one
        except BrokerError as exc:
            # Ending the stream is the honest answer: the client resumes from its cursor.
            # (Handed off, the app's exception handlers are no longer around the body.)
            log.warning("stream_ended_early", error=str(exc))
            if not self._started:
                await error_answer(exc)(scope, receive, send)
                return
        if not self._started:
            await self._start(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, send: Send) -> None:
        self._started = True
        # Sent once, so not kept for the stream's life (a dozen small objects per viewer).
        headers, self.raw_headers = self.raw_headers, []
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})


class _Reason(enum.Enum):
    DISCONNECT = "disconnect"
    DRAIN = "drain"


class _Stop:
    """Stops a body running in `task` (by cancelling it) once, and says why."""

    __slots__ = ("_armed", "_task", "reason")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._armed = True
        self.reason: _Reason | None = None

    def disconnected(self) -> None:
        self._stop(_Reason.DISCONNECT)

    def drained(self) -> None:
        self._stop(_Reason.DRAIN)

    def _stop(self, reason: _Reason) -> None:
        if self._armed and self.reason is None:
            self.reason = reason
            self._task.cancel()

    def disarm(self) -> None:
        """Stop nothing more; withdraw the cancellation this made, if any."""
        self._armed = False
        if self.reason is not None:
            self._task.uncancel()


async def _watch(receive: Receive, disconnected: Callable[[], None]) -> None:
    """Wait for the client's `http.disconnect`, then call `disconnected()`."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        # Also when `receive` fails: a stream nobody can watch any more ends. Once the
        # body has ended (this is cancelled then) the stop is disarmed and this is a no-op.
        disconnected()
