"""The `/ds/` HTTP edge: Durable Streams at `/ds/<path>`, runs at `/ds/runs/<id>`.

Auth is the broker's (bearer or cookie); with `BROKER_DS_ANONYMOUS_WORKSPACE`
set, a request without credentials acts in that workspace (the public
conformance suite sends none). Streams live per workspace: the same path in
two workspaces is two streams. Errors keep the contract's shape
`{"error": {"code", "message"}}` with the protocol's status and headers.
"""

from __future__ import annotations

import contextlib
import re
import uuid

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from broker.errors import AuthError
from broker.store.postgres import Store
from broker.web.http import authenticate, error_response, get_settings, get_store
from durable.protocol import ProtocolError
from durable.reader import Head, head_response, read_response
from durable.sources import StreamSource
from durable.store import DurableStore
from durable.wakeups import Wakeups
from durable.writer import AppendRequest, CreateRequest, Writer

__all__ = ["RUNS_PREFIX", "open_durable", "router"]

RUNS_PREFIX = "runs/"
_CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, PUT, DELETE, HEAD, OPTIONS",
    "access-control-allow-headers": (
        "content-type, authorization, Stream-Seq, Stream-TTL, Stream-Expires-At, "
        "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, If-None-Match, "
        "Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset"
    ),
    "access-control-expose-headers": (
        "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, "
        "Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, etag, content-type, "
        "content-encoding, vary"
    ),
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "cross-origin",
}
_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

router = APIRouter()


async def workspace_of(request: Request) -> uuid.UUID:
    """The caller's workspace: from credentials, or the anonymous workspace if configured."""
    settings = get_settings(request)
    presented = request.headers.get("authorization") or request.cookies
    anonymous = settings.ds_anonymous_workspace
    if anonymous is None or presented:
        return authenticate(request).workspace_id
    cached: uuid.UUID | None = getattr(request.app.state, "ds_anonymous_id", None)
    if cached is None:
        cached = await get_store(request).ensure_workspace(anonymous)
        request.app.state.ds_anonymous_id = cached
    return cached


def _check_path(path: str) -> None:
    """Refuse, with ProtocolError 400, a path holding a control character (NUL included).

    PostgreSQL's text cannot hold NUL, and no stream name needs a control character.
    """
    if _CONTROL.search(path):
        raise ProtocolError(400, "Invalid stream path: control characters are not allowed")


def _with_cors(response: Response) -> Response:
    for name, value in _CORS.items():
        response.headers.setdefault(name, value)
    return response


def _refused(exc: ProtocolError) -> Response:
    response = error_response(exc.status, _CODES.get(exc.status, "error"), exc.message)
    response.headers.update(exc.headers)
    return response


@router.api_route(
    "/ds/{path:path}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def durable_stream(request: Request, path: str) -> Response:
    """Every Durable Streams request; see the module docstring."""
    if request.method == "OPTIONS":
        return _with_cors(Response(status_code=204))
    try:
        workspace_id = await workspace_of(request)
        _check_path(path)
        if path.startswith(RUNS_PREFIX):
            from durable.runs import run_response

            response = await run_response(request, workspace_id, path[len(RUNS_PREFIX) :])
        else:
            response = await _stream_response(request, workspace_id, path)
    except ProtocolError as exc:
        response = _refused(exc)
    except AuthError as exc:
        response = error_response(401, "unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = "Bearer"
    return _with_cors(response)


async def _stream_response(request: Request, workspace_id: uuid.UUID, path: str) -> Response:
    store: DurableStore = request.app.state.ds_store
    wakeups: Wakeups = request.app.state.ds_wakeups
    writer = Writer(store, wakeups)
    headers = request.headers
    if request.method == "PUT":
        outcome = await writer.create(
            workspace_id,
            path,
            CreateRequest(
                content_type=headers.get("content-type"),
                ttl=headers.get("stream-ttl"),
                expires_at=headers.get("stream-expires-at"),
                closed=headers.get("stream-closed") == "true",
                body=await request.body(),
                forked_from=headers.get("stream-forked-from"),
                fork_offset=headers.get("stream-fork-offset"),
                fork_sub=headers.get("stream-fork-sub-offset"),
            ),
        )
        if outcome.status == 201:
            # The path as the client escaped it: a header carries only latin-1.
            raw = request.scope.get("raw_path") or request.url.path.encode()
            url = request.url
            outcome.headers["location"] = f"{url.scheme}://{url.netloc}{raw.decode('latin-1')}"
        return Response(status_code=outcome.status, headers=outcome.headers)
    if request.method == "POST":
        outcome = await writer.append(
            workspace_id,
            path,
            AppendRequest(
                content_type=headers.get("content-type"),
                body=await request.body(),
                close=headers.get("stream-closed") == "true",
                stream_seq=headers.get("stream-seq"),
                producer_id=headers.get("producer-id"),
                producer_epoch=headers.get("producer-epoch"),
                producer_seq=headers.get("producer-seq"),
            ),
        )
        return Response(status_code=outcome.status, headers=outcome.headers)
    if request.method == "DELETE":
        deleted = await store.delete(workspace_id, path)
        if deleted is None:
            raise ProtocolError(410, "Stream is gone")
        if not deleted:
            raise ProtocolError(404, "Stream not found")
        return Response(status_code=204)
    record = await store.get(workspace_id, path)
    if record is None:
        raise ProtocolError(404, "Stream not found")
    if record.deleted:
        raise ProtocolError(410, "Stream is gone")
    if request.method == "HEAD":
        extra: dict[str, str] = {}
        if record.ttl_seconds is not None:
            extra["Stream-TTL"] = str(record.ttl_seconds)
        if record.expires_at_text is not None:
            extra["Stream-Expires-At"] = record.expires_at_text
        head = Head(record.last_seq, record.closed)
        return head_response(path, record.content_type, head, extra)
    if record.ttl_seconds is not None:
        await store.touch(record.id)  # a read resets the idle clock
    source = StreamSource(store, wakeups, record)
    return await read_response(request, source, long_poll_s=get_settings(request).ds_long_poll_s)


async def open_durable(app: FastAPI, stack: contextlib.AsyncExitStack, store: Store) -> None:
    """Lifespan hook: the `/ds/` store and this process's LISTEN for stream wake-ups."""
    app.state.ds_store = DurableStore(store.engine, store.keyring)
    app.state.ds_wakeups = await stack.enter_async_context(Wakeups(app.state.ds_store))
