"""The read side's endpoints (design 4.1 and 4.2).

- `POST /api/runs/{run_id}/subscribe` `{"cursor": str | null}` (no body: null)
- `GET /api/runs/{run_id}/events` — the same for `EventSource`: the cursor
  is `Last-Event-ID` when the browser reconnects, else `?cursor=`
- `GET /api/runs/{run_id}` and `GET /api/threads/{thread_id}/messages`

Every one is scoped to the caller's workspace: another workspace's run or
thread is a 404, like an unknown one. Bad input is refused before anything
is read or registered: 406 for an `Accept` no format satisfies, 400
`invalid_cursor`, 404 for an id that is not even a UUID.

An SSE answer opens with `retry:` and `id: <resolved cursor>` (design 4.2),
so an `EventSource` that drops before its first event reconnects from
exactly there, even when it asked for `cursor=now`: its `Last-Event-ID`
then names the head it was shown, not a moving "now". `GET .../events` for
a finished run with nothing due answers 204, which tells an `EventSource`
to stop reconnecting.

`?wait=false` answers with what is stored now instead of following the run:
the contract's switch for `application/json`, honoured by every format.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated

import structlog
from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import Response

from broker.store.postgres import Store
from broker.store.records import RunState, StoredMessage
from broker.web.auth import Principal
from broker.web.http import authenticate, get_settings, get_store, path_id
from broker.web.metrics import Metrics
from broker.web.sse import encode_comment, encode_retry
from models.api import MessageOut, MessagesOut, RunOut, SubscribeRequest
from models.ids import RunId, ThreadId
from subscribe.cursor import parse_cursor, resolve_cursor
from subscribe.hub import Hub
from subscribe.negotiation import Format, negotiate
from subscribe.render import json_document_bytes, render_markdown, render_plain, run_view
from subscribe.response import RacingStreamResponse
from subscribe.subscription import (
    due_batches,
    due_frames,
    is_finished,
    live_batches,
    live_frames,
)
from subscribe.viewer import Frame

__all__ = ["JSON_KEEPALIVE", "NDJSON_KEEPALIVE", "RETRY_MS", "router"]

log = structlog.get_logger(__name__)

router = APIRouter()

RETRY_MS = 1000
"""The `retry:` hint: how long an `EventSource` waits before it reconnects."""

NDJSON_KEEPALIVE = b"\n"
"""Sent on an idle NDJSON stream every `BROKER_KEEPALIVE_S` (an empty line)."""

JSON_KEEPALIVE = b" "
"""Sent while an `application/json` answer waits, every `BROKER_KEEPALIVE_S`."""

_STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Vary": "Accept",
}


async def _caller(request: Request) -> Principal:
    """`authenticate`, on the loop: run as a sync dependency, it would take a trip
    through the thread pool, whose per-task state then lives as long as the stream."""
    return authenticate(request)


Caller = Annotated[Principal, Depends(_caller)]


def _message_out(stored: StoredMessage) -> MessageOut:
    return MessageOut(
        id=str(stored.message_id),
        run_id=str(stored.run_id) if stored.run_id is not None else None,
        position=stored.position,
        role=stored.message.role,
        content=stored.message.content,
        created_at=stored.created_at,
    )


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


@router.post("/api/runs/{run_id}/subscribe")
async def subscribe(
    request: Request,
    run_id: str,
    caller: Caller,
    body: Annotated[SubscribeRequest | None, Body()] = None,
    wait: bool = True,
) -> Response:
    """The run's events after the body's cursor, in the format `Accept` asks for."""
    return await _answer(request, caller, run_id, body.cursor if body else None, wait)


@router.get("/api/runs/{run_id}/events")
async def events(
    request: Request,
    run_id: str,
    caller: Caller,
    cursor: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
    wait: bool = True,
) -> Response:
    """The same stream for `EventSource`: `Last-Event-ID` wins over `?cursor=`."""
    return await _answer(request, caller, run_id, last_event_id or cursor, wait, event_source=True)


@router.get("/api/runs/{run_id}")
async def get_run(request: Request, run_id: str, caller: Caller) -> RunOut:
    state = await get_store(request).get_run_state(
        caller.workspace_id, RunId(path_id(run_id, "run"))
    )
    return run_view(state)


@router.get("/api/threads/{thread_id}/messages")
async def list_messages(request: Request, thread_id: str, caller: Caller) -> MessagesOut:
    store = get_store(request)
    thread = await store.get_thread(caller.workspace_id, ThreadId(path_id(thread_id, "thread")))
    messages = await store.list_messages(thread.thread_id)
    return MessagesOut(messages=[_message_out(message) for message in messages])


async def _answer(
    request: Request,
    caller: Principal,
    run_id: str,
    cursor_value: object,
    wait: bool,
    *,
    event_source: bool = False,
) -> Response:
    answer_format = negotiate(request.headers.get("accept"))
    cursor = parse_cursor(cursor_value)
    store = get_store(request)
    state = await store.get_run_state(caller.workspace_id, RunId(path_id(run_id, "run")))
    after = resolve_cursor(cursor, state.head)
    if event_source and answer_format is Format.SSE and is_finished(state) and after >= state.head:
        # Nothing is due and nothing ever will be: 204 stops the EventSource's reconnects.
        return Response(status_code=204, headers=_STREAM_HEADERS)
    # Bound for the rest of this request, the stream's tasks included (they copy it).
    structlog.contextvars.bind_contextvars(run_id=str(state.record.run_id))
    log.info(
        "subscribed",
        status=state.record.status,
        after=after,
        format=answer_format.value,
        wait=wait,
    )
    metrics = _metrics(request)
    hub, idle_s = _hub(request), get_settings(request).keepalive_s
    content: AsyncGenerator[bytes, None]
    if answer_format in (Format.SSE, Format.NDJSON):
        # Streams write every frame due at a wake-up in one send, not one send a frame.
        batches: AsyncGenerator[list[Frame] | None, None] = (
            live_batches(hub, store, metrics, state, after, idle_s=idle_s)
            if wait
            else due_batches(store, metrics, state, after, max_bytes=hub.catchup_read_bytes)
        )
        if answer_format is Format.SSE:
            content = _sse(batches, metrics, after)
        else:
            content = _ndjson(batches, metrics)
    else:
        frames = (
            live_frames(hub, store, metrics, state, after, idle_s=idle_s)
            if wait
            else due_frames(store, metrics, state, after, max_bytes=hub.catchup_read_bytes)
        )
        content = _document(answer_format, frames, store, caller, state, metrics)
    return RacingStreamResponse(
        content,
        media_type=answer_format.value,
        headers=_STREAM_HEADERS,
        drain=getattr(request.app.state, "drain", None),
    )


async def _sse(
    batches: AsyncGenerator[list[Frame] | None, None], metrics: Metrics, after: int
) -> AsyncGenerator[bytes, None]:
    yield encode_retry(RETRY_MS, id=after)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if batch is None:
                yield encode_comment("keepalive")
            elif batch:
                yield b"".join(frame.sse for frame in batch)
                metrics.events_delivered.inc(len(batch))
            del batch  # not kept while the viewer idles (`follow_batches`)


async def _ndjson(
    batches: AsyncGenerator[list[Frame] | None, None], metrics: Metrics
) -> AsyncGenerator[bytes, None]:
    # The keepalive is an empty line: NDJSON readers skip blank lines, proxies see bytes.
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if batch is None:
                yield NDJSON_KEEPALIVE
            elif batch:
                yield b"".join(frame.ndjson for frame in batch)
                metrics.events_delivered.inc(len(batch))
            del batch


async def _document(
    answer_format: Format,
    frames: AsyncGenerator[Frame | None, None],
    store: Store,
    caller: Principal,
    state: RunState,
    metrics: Metrics,
) -> AsyncGenerator[bytes, None]:
    """The whole answer once the frames end (the terminal event, if waiting).

    While a JSON answer waits, each keepalive tick sends one space: whitespace before
    a JSON value is still the same document, and a proxy sees the connection alive.
    """
    # JSON keeps each event's wire bytes, shared with the tail (a parsed event costs ten
    # times more, for every waiting answer); the renderers need the parsed events.
    kept: list[Frame] = []
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if frame is not None:
                kept.append(frame)
            elif answer_format is Format.JSON:
                yield JSON_KEEPALIVE
    # The row as it is now: the terminal event and the run's final status commit together.
    final = await store.get_run_state(caller.workspace_id, state.record.run_id)
    metrics.events_delivered.inc(len(kept))
    if answer_format is Format.JSON:
        yield json_document_bytes(final, [frame.body for frame in kept])
        return
    events = [frame.event for frame in kept]
    if answer_format is Format.MARKDOWN:
        text = render_markdown(final, events)
    else:
        text = render_plain(final, events)
    yield text.encode()
