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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping

import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broker.errors import DatabaseUnavailable
from broker.web.http import error_answer
from subscribe.errors import StreamBroken

__all__ = ["RacingStreamResponse"]

log = structlog.get_logger(__name__)


class RacingStreamResponse(Response):
    """Streams `content`; a client disconnect cancels it at once."""

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.content = content
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with asyncio.TaskGroup() as group:
            streaming = group.create_task(self._stream(scope, receive, send))
            watching = group.create_task(self._watch(receive))
            streaming.add_done_callback(lambda _: watching.cancel())
            watching.add_done_callback(lambda _: streaming.cancel())

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        try:
            async with contextlib.aclosing(self.content) as content:
                async for chunk in content:
                    if not started:
                        await self._start(send)
                        started = True
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (DatabaseUnavailable, StreamBroken) as exc:
            # Ending the stream is the honest answer: the client resumes from its cursor.
            log.warning("stream_ended_early", error=str(exc))
            if not started:
                await error_answer(exc)(scope, receive, send)
                return
        if not started:
            await self._start(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
