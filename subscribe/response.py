"""A streaming response raced against the client's disconnect, whatever the server.

A viewer blocked waiting for the next event writes nothing, so a vanished
client would only be noticed at the next keepalive. This response runs the
body in one task and waits for the ASGI `http.disconnect` in another; the
first to finish cancels the other, and the body iterator is closed in every
case, so a viewer's `finally` (leaving its tail) runs as soon as the client
goes. Starlette's `StreamingResponse` does this only below ASGI spec 2.4;
here it is explicit (STYLE 10).

The start of the response is sent with the first chunk, so a body that
waits (the `application/json` answer waits for the terminal event) still
notices a disconnect, and a database failure before the first chunk is
answered as the contract's 503 rather than a broken stream.

The process's `Drain` (shutdown signal) is a third racer: when it is set the
body is closed and the response ends cleanly (the chunked body terminated,
no traceback), so the server is not left waiting for its graceful-shutdown
timeout; the client reconnects elsewhere with its cursor. A body that had
not started yet (a document waiting for the terminal event) is answered 503
`shutting_down` with `Retry-After` instead.

sse-starlette's `EventSourceResponse` was weighed for this: its shutdown
detection polls every 0.5 s and cancels the body without terminating the
response unless the body itself races a shutdown event, and it serves only
the SSE format; one race here covers every format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping

import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broker.errors import DatabaseUnavailable, ShuttingDown
from broker.web.draining import Drain
from broker.web.http import error_answer
from subscribe.errors import StreamBroken

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
        async with asyncio.TaskGroup() as group:
            streaming = group.create_task(self._stream(scope, receive, send))
            stoppers = [group.create_task(self._watch(receive))]
            if self._drain is not None:
                stoppers.append(group.create_task(self._drain.wait()))
            streaming.add_done_callback(lambda _: [s.cancel() for s in stoppers])
            for stopper in stoppers:
                stopper.add_done_callback(lambda _: streaming.cancel())
        drained = len(stoppers) > 1 and stoppers[1].done() and not stoppers[1].cancelled()
        if drained and streaming.cancelled():
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

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with contextlib.aclosing(self.content) as content:
                async for chunk in content:
                    if not self._started:
                        await self._start(send)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (DatabaseUnavailable, StreamBroken) as exc:
            # Ending the stream is the honest answer: the client resumes from its cursor.
            log.warning("stream_ended_early", error=str(exc))
            if not self._started:
                await error_answer(exc)(scope, receive, send)
                return
        if not self._started:
            await self._start(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, send: Send) -> None:
        self._started = True
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
