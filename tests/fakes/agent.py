"""A fake agent service (design 4.4) that answers each run from a script.

The broker's producer talks to it over real HTTP, served by uvicorn through
`tests/servers.py`; it is the one mocked edge of the write side's end-to-end
tests. A test scripts the answer to a message before sending it:

    fake.script("hello", text("Hel"), text("lo"), complete("Hello"))
    fake.script("flaky", text("a"), complete("a"), failures=[503, 500])
    fake.script("cut", text("a"), DROP)

`failures` are the HTTP statuses answered to the first attempts, in order (for
a refused connection, point the broker at an unbound port instead).

Steps: an event (`text`, `event`, ...) gets the next SSE id from 1; `Raw`
bytes go out as they are (malformed frames); `Pause` sleeps; `Gate` waits
for the test to open it; `DROP` breaks the connection mid-stream (the ASGI
app returns before the body is complete, so uvicorn closes the connection
and the client sees a chunked body cut short). The end of the steps ends the
body cleanly, with or without a terminal event.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broker.web.sse import encode_event

__all__ = [
    "DROP",
    "FakeAgent",
    "Gate",
    "Pause",
    "Raw",
    "Recorded",
    "Script",
    "complete",
    "error",
    "event",
    "text",
]


@dataclass(frozen=True)
class Raw:
    data: bytes


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass
class Gate:
    """A point the stream waits at until the test calls `open()`; `reached` tells it got there."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.opened.set()


class _Drop:
    pass


DROP = _Drop()

Step = dict[str, Any] | Raw | Pause | Gate | _Drop


def event(event_type: str, **data: Any) -> dict[str, Any]:
    return {"event_type": event_type, "data": data}


def text(value: str) -> dict[str, Any]:
    return event("text", text=value)


def complete(*assistant: str) -> dict[str, Any]:
    return event(
        "complete", new_messages=[{"role": "assistant", "content": value} for value in assistant]
    )


def error(message: str, error_type: str = "model_error") -> dict[str, Any]:
    return event("error", error=message, error_type=error_type)


@dataclass
class Script:
    steps: list[Step]
    failures: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Recorded:
    """One call the broker made."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class _ScriptedStream(Response):
    """A `text/event-stream` body played from the steps, chunk by chunk."""

    def __init__(self, steps: list[Step], done: asyncio.Event, after: int = 0) -> None:
        super().__init__(media_type="text/event-stream")
        self._steps = steps
        self._done = done
        self._after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Like the real agent, stop playing to a client that went away.
        watcher = asyncio.create_task(_disconnected(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            next_id = 1
            for step in self._steps:
                if watcher.done():
                    return
                if isinstance(step, Raw):
                    await send({"type": "http.response.body", "body": step.data, "more_body": True})
                elif isinstance(step, Pause):
                    await asyncio.wait([watcher], timeout=step.seconds)
                elif isinstance(step, Gate):
                    step.reached.set()
                    opened = asyncio.create_task(step.opened.wait())
                    await asyncio.wait([watcher, opened], return_when=asyncio.FIRST_COMPLETED)
                    opened.cancel()
                elif isinstance(step, _Drop):
                    # Returning before the body is complete makes uvicorn close the
                    # connection: the client sees a chunked body cut short.
                    return
                else:
                    frame = encode_event(json.dumps(step), id=next_id)
                    next_id += 1
                    if next_id - 1 <= self._after:
                        continue  # a re-attach resumes after Last-Event-ID, like the agent
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self._done.set()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class FakeAgent:
    """The fake service; `app` is what to serve."""

    def __init__(self, local_secret: str) -> None:
        self._secret = local_secret
        self._scripts: dict[str, Script] = {}
        self._messages_by_run: dict[str, str] = {}
        self.calls: list[Recorded] = []
        self.attempts: Counter[str] = Counter()
        self.cancelled: list[str] = []
        self.streams_done: dict[str, asyncio.Event] = {}
        self.app = self._build()

    def script(self, message: str, *steps: Step, failures: list[int] | None = None) -> None:
        self._scripts[message] = Script(list(steps), list(failures or []))
        self.streams_done[message] = asyncio.Event()

    def knows(self, run_id: str, message: str) -> None:
        """Answer re-attaches to `run_id` with `message`'s script (a run started elsewhere)."""
        self._messages_by_run[run_id] = message

    def started(self, message: str) -> list[Recorded]:
        """The successful and failed `POST /runs/stream` calls for a message."""
        return [
            c
            for c in self.calls
            if c.path == "/runs/stream" and c.body and c.body["new_user_message"] == message
        ]

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/runs/stream")
        async def start(request: Request) -> Response:
            body = await request.json()
            self._record(request, body)
            if request.headers.get("x-local-secret") != self._secret:
                return _error(401, "unauthorized")
            message = body["new_user_message"]
            self._messages_by_run[body["run_id"]] = message
            return self._answer(message)

        @app.get("/runs/{run_id}/stream")
        async def reattach(run_id: str, request: Request) -> Response:
            self._record(request, None)
            message = self._messages_by_run.get(run_id)
            if message is None:
                return _error(404, "run_not_found")
            after = int(request.headers.get("last-event-id") or 0)
            return self._answer(message, attempt=False, after=after)

        @app.post("/runs/{run_id}/cancel")
        async def cancel(run_id: str, request: Request) -> Response:
            self._record(request, None)
            self.cancelled.append(run_id)
            return JSONResponse({"run_id": run_id, "status": "cancelling"}, status_code=202)

        return app

    def _record(self, request: Request, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.calls.append(Recorded(request.method, request.url.path, headers, body))

    def _answer(self, message: str, *, attempt: bool = True, after: int = 0) -> Response:
        script = self._scripts.get(message)
        if script is None:
            return _error(422, "unscripted")
        if attempt:
            self.attempts[message] += 1
            failed = self.attempts[message]
            if failed <= len(script.failures):
                return _error(script.failures[failed - 1], "scripted_failure")
        return _ScriptedStream(script.steps, self.streams_done[message], after)


def _error(status: int, code: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": code}}, status_code=status)
