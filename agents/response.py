"""`RunStreamResponse`: one client's SSE view of a run's buffer, from its cursor on.

The response reads the buffer; it never drives the run. It attaches to the
registry when the ASGI server starts it and detaches when it ends for any
reason (finished, client gone, server shutting down), in `__call__`'s
`finally` rather than in the body generator, because Starlette may abandon a
generator without closing it when the client disconnects mid-send.

"Delivered" means the chunk holding the terminal event was handed to the
server: the generator only resumes after `send` returned. That is what lets
the registry forget the run.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from agents.registry import Run, RunRegistry
from agents.sse import KEEPALIVE

__all__ = ["SSE_HEADERS", "RunStreamResponse"]

SSE_HEADERS: Final[dict[str, str]] = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

# Frames per write: big enough to batch a fast run or a catch-up, small enough that
# one write never holds megabytes.
_MAX_FRAMES_PER_CHUNK: Final = 256


class RunStreamResponse(StreamingResponse):
    """`text/event-stream` of a run's frames with id > `after`, ending after the terminal."""

    def __init__(self, registry: RunRegistry, run: Run, *, after: int, keepalive_s: float) -> None:
        self._registry = registry
        self._run = run
        self._keepalive_s = keepalive_s
        self._delivered_terminal = False
        self._body = self._frames(after)
        super().__init__(self._body, media_type="text/event-stream", headers=SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._registry.attach(self._run)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._registry.detach(self._run, delivered_terminal=self._delivered_terminal)
            await self._body.aclose()

    async def _frames(self, after: int) -> AsyncGenerator[bytes, None]:
        buffer = self._run.buffer
        seq = after
        while True:
            terminal = buffer.terminal_seq
            if terminal is not None and seq >= terminal:
                # Sent now, or the cursor says the client had it already.
                self._delivered_terminal = True
                return
            frames = buffer.frames_after(seq, limit=_MAX_FRAMES_PER_CHUNK)
            if frames:
                yield b"".join(frames)
                seq += len(frames)
            elif not await buffer.wait_beyond(seq, self._keepalive_s):
                yield KEEPALIVE
