"""Reading a stream: catch-up, long-poll and SSE, over any `Source`.

A `Source` is a stream seen by one request: its head (last seq, closed),
its messages after a seq, and a bounded wait for more. User streams and
runs are both sources, so both answer with the same headers: the offset
after the last message returned (`Stream-Next-Offset`), `Stream-Up-To-Date`
when the reader has reached the tail, `Stream-Closed` once it has read a
closed stream to its end, `Stream-Cursor` on live answers, and an ETag
naming the byte range, so a repeated catch-up read answers 304.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from durable.offsets import NOW, InvalidOffset, offset_of, seq_of
from durable.protocol import ProtocolError, etag_of, is_json, is_text, response_cursor, sse_event

__all__ = ["Head", "Source", "head_response", "read_response"]

_COMPRESS_FROM = 1024


@dataclass(frozen=True, slots=True)
class Head:
    """A stream's last seq, and whether it is closed (nothing will follow)."""

    last_seq: int
    closed: bool


class Source(Protocol):
    """One stream as seen by one read request."""

    path: str
    content_type: str

    async def head(self) -> Head: ...

    async def read(self, after: int) -> list[bytes]:
        """Messages after seq `after`, in order, contiguous (possibly fewer than exist)."""
        ...

    async def wait(self, after: int, limit_s: float) -> None:
        """Return once something may follow `after` (or the stream closed), or on timeout."""
        ...

    async def aclose(self) -> None:
        """Release what the request held (a place in a shared tail)."""
        ...


def body_of(content_type: str, messages: Sequence[bytes]) -> bytes:
    """The response body: a JSON array in JSON mode, else the bytes concatenated."""
    if is_json(content_type):
        return b"[" + b",".join(messages) + b"]"
    return b"".join(messages)


def head_response(
    source_path: str, content_type: str, head: Head, extra: dict[str, str]
) -> Response:
    tail = offset_of(head.last_seq)
    headers = {"Stream-Next-Offset": tail, "cache-control": "no-store", **extra}
    headers["content-type"] = content_type
    if head.closed:
        headers["Stream-Closed"] = "true"
    headers["etag"] = etag_of(source_path, "-1", tail, head.closed)
    return Response(status_code=200, headers=headers)


def _parse_offset(request: Request) -> str | None:
    offsets = request.query_params.getlist("offset")
    if not offsets:
        return None
    if len(offsets) > 1:
        raise ProtocolError(400, "Multiple offset parameters not allowed")
    offset = offsets[0]
    if offset == "":
        raise ProtocolError(400, "Empty offset parameter")
    if offset != NOW:
        try:
            seq_of(offset)
        except InvalidOffset as exc:
            raise ProtocolError(400, "Invalid offset format") from exc
    return offset


async def read_response(request: Request, source: Source, *, long_poll_s: float) -> Response:
    """GET: catch-up, `live=long-poll` or `live=sse` from `offset`; closes `source` when done."""
    if request.query_params.get("live") == "sse":
        return await _read(request, source, long_poll_s)  # the stream closes the source
    try:
        return await _read(request, source, long_poll_s)
    finally:
        await source.aclose()


async def _read(request: Request, source: Source, long_poll_s: float) -> Response:
    offset = _parse_offset(request)
    live = request.query_params.get("live")
    cursor = request.query_params.get("cursor")
    if live in ("long-poll", "sse") and offset is None:
        name = "SSE" if live == "sse" else "Long-poll"
        raise ProtocolError(400, f"{name} requires offset parameter")
    head = await source.head()
    after = head.last_seq if offset == NOW else seq_of(offset or "-1")
    if live == "sse":
        return _sse(source, after, cursor, long_poll_s)
    if offset == NOW and live != "long-poll":
        headers = {
            "Stream-Next-Offset": offset_of(head.last_seq),
            "Stream-Up-To-Date": "true",
            "cache-control": "no-store",
            "content-type": source.content_type,
        }
        if head.closed:
            headers["Stream-Closed"] = "true"
        return Response(body_of(source.content_type, []), 200, headers)
    messages = await source.read(after)
    extra: dict[str, str] = {}
    if live == "long-poll":
        extra["Stream-Cursor"] = response_cursor(cursor)
        if not messages and after >= head.last_seq:
            if not head.closed:
                await source.wait(after, long_poll_s)
                messages = await source.read(after)
                head = await source.head()
            if not messages:
                done = {
                    "Stream-Next-Offset": offset_of(after),
                    "Stream-Up-To-Date": "true",
                    **extra,
                }
                if head.closed:
                    done["Stream-Closed"] = "true"
                return Response(status_code=204, headers=done)
    head = await source.head()
    end = after + len(messages)
    up_to_date = end >= head.last_seq
    closed = head.closed and up_to_date
    headers = {
        "content-type": source.content_type,
        "Stream-Next-Offset": offset_of(end),
        **extra,
    }
    if up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    if closed:
        headers["Stream-Closed"] = "true"
    etag = etag_of(source.path, offset or "-1", offset_of(end), closed)
    headers["etag"] = etag
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    body = body_of(source.content_type, messages)
    if len(body) >= _COMPRESS_FROM and _wants_gzip(request.headers.get("accept-encoding")):
        body = gzip.compress(body, compresslevel=5)
        headers["content-encoding"] = "gzip"
        headers["vary"] = "accept-encoding"
    return Response(body, 200, headers)


def _wants_gzip(accept_encoding: str | None) -> bool:
    names = [part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")]
    return "gzip" in names


def _sse(source: Source, after: int, cursor: str | None, wait_s: float) -> Response:
    binary = not is_text(source.content_type)
    headers = {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    if binary:
        headers["Stream-SSE-Data-Encoding"] = "base64"
    return StreamingResponse(
        _sse_frames(source, after, cursor, wait_s, binary),
        headers=headers,
    )


def _payload(content_type: str, message: bytes, binary: bool) -> str:
    if binary:
        return base64.b64encode(message).decode()
    if is_json(content_type):
        return "[" + message.decode() + "]"
    return message.decode("utf-8", errors="replace")


async def _sse_frames(
    source: Source, after: int, cursor: str | None, wait_s: float, binary: bool
) -> AsyncIterator[bytes]:
    """`event: data` per message and an `event: control` after every batch."""
    try:
        async for frame in _sse_loop(source, after, cursor, wait_s, binary):
            yield frame
    finally:
        await source.aclose()


async def _sse_loop(
    source: Source, after: int, cursor: str | None, wait_s: float, binary: bool
) -> AsyncIterator[bytes]:
    position = after
    while True:
        try:
            messages = await source.read(position)
        except ProtocolError:
            return  # past retention: the client's next request gets the 410
        head = await source.head()
        batch: list[bytes] = []  # one write per batch: a data event and its control together
        for message in messages:
            # Every data event is followed by its control event, so a client that
            # stops anywhere knows the offset to resume from.
            batch.append(sse_event("data", _payload(source.content_type, message, binary)))
            position += 1
            if position < head.last_seq or not head.closed:
                batch.append(sse_event("control", _control(position, head, cursor)))
        head = await source.head()
        at_tail = position >= head.last_seq
        if head.closed and at_tail:
            closed = {"streamNextOffset": offset_of(position), "streamClosed": True}
            yield b"".join([*batch, sse_event("control", json.dumps(closed))])
            return
        if not messages and at_tail:
            batch.append(sse_event("control", _control(position, head, cursor)))
        if batch:
            yield b"".join(batch)
        if at_tail:
            await source.wait(position, wait_s)


def _control(position: int, head: Head, cursor: str | None) -> str:
    control: dict[str, object] = {
        "streamNextOffset": offset_of(position),
        "streamCursor": response_cursor(cursor),
    }
    if position >= head.last_seq:
        control["upToDate"] = True
    return json.dumps(control)
