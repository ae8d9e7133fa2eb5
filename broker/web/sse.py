"""The project's one incremental Server-Sent Events parser and encoder.

Parsing follows WHATWG HTML § "Server-sent events" ("Parsing an event stream",
"Interpreting an event stream"). Deliberate choices:

- End of stream discards an incomplete event, as the spec requires: a block without its
  terminating blank line (including a final line with no line terminator at all) is never
  dispatched, so a connection cut mid-event cannot yield a truncated payload. `close()`
  therefore never returns an event in practice; it exists so callers have one place to end
  a stream and so the parser can be reused for a reconnection.
- `last_event_id` is the spec's "last event ID string": it is committed only at a blank line.
  An `id:` inside an event truncated by EOF is not committed, so resuming from
  `last_event_id` re-requests that event instead of skipping it. `ServerSentEvent.id` is the
  "last event ID buffer" at dispatch, which is the same value.
- `retry` follows the spec and takes effect as soon as its line is parsed, even in a block
  that is later discarded; `ServerSentEvent.retry` only reports a value carried by that
  event's own block.
- A CR is acted on as soon as it arrives (an LF directly after it, even in the next chunk, is
  swallowed). Waiting for the next byte to tell CR from CRLF would stall a CR-terminated
  stream by one chunk; acting at once is safe because whatever follows a CR, the line before
  it is complete.
- `close()` resets the per-connection state but keeps `last_event_id` and `retry`, as an
  EventSource does across reconnections.
- Invalid UTF-8 becomes U+FFFD rather than raising: one bad byte from an agent must not kill
  the stream.
- The encoder writes LF line ends only and splits `data` on CR, LF and CRLF (the same line
  ends the parser recognises), so CR and CRLF inside data come back as LF.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SSEParser",
    "ServerSentEvent",
    "aiter_sse",
    "encode_comment",
    "encode_event",
    "encode_retry",
    "iter_sse",
]

# Only these three are SSE line ends; str.splitlines() would also split on U+2028, U+0085, ...
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    `id` is the last event ID as of this event (it persists from earlier events), None if the
    stream never set one; `retry` is set only if this event's own block carried a valid one.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEParser:
    """Incremental: feed bytes in any chunking, get complete events."""

    __slots__ = (
        "_data",
        "_decoder",
        "_event_retry",
        "_event_type",
        "_id_buffer",
        "_last_event_id",
        "_partial",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(self) -> None:
        self._last_event_id: str | None = None
        self._retry: int | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # whether any text was decoded yet (BOM is only stripped then)
        self._skip_lf = False  # the previous text ended with CR: an LF next completes a CRLF
        # Pieces of the current unterminated line; a list so a long line arriving in many
        # chunks is joined once instead of re-copied per chunk.
        self._partial: list[str] = []
        self._data: list[str] = []
        self._event_type = ""
        self._event_retry: int | None = None
        self._id_buffer = self._last_event_id

    @property
    def last_event_id(self) -> str | None:
        """The last event ID committed by a blank line (what to send as `Last-Event-ID`)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The latest valid reconnection time seen, in milliseconds."""
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: dispatch nothing incomplete, reset for a possible reconnection."""
        # The decoder only holds back an unfinished multi-byte sequence, never a line end, so
        # this cannot complete a line; running it through anyway keeps one code path.
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._reset_stream()
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == _BOM:
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if not text:
            return []
        lines = _LINE_END.split(text)
        if len(lines) == 1:
            self._partial.append(text)
            return []
        events: list[ServerSentEvent] = []
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial.clear()
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        for line in lines:
            self._process_line(line, events)
        self._skip_lf = text[-1] == "\r"
        return events

    def _process_line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        # isascii(): isdigit() alone also accepts superscripts and other scripts' digits.
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self._event_retry = int(value)

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        self._last_event_id = self._id_buffer
        if self._data:
            events.append(
                ServerSentEvent(
                    event=self._event_type or "message",
                    data="\n".join(self._data),
                    id=self._id_buffer,
                    retry=self._event_retry,
                )
            )
            self._data = []
        self._event_type = ""
        self._event_retry = None


def iter_sse(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event


def _reject_line_breaks(field: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {field} must not contain CR or LF (it would break framing)")


def encode_event(
    data: str,
    *,
    id: str | int | None = None,
    event: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event block; multi-line data becomes several `data:` lines."""
    parts: list[str] = []
    if id is not None:
        id = str(id)
        _reject_line_breaks("id", id)
        if "\0" in id:
            raise ValueError("SSE id must not contain U+0000 (parsers ignore such an id)")
        parts.append(f"id: {id}\n")
    if event is not None:
        _reject_line_breaks("event", event)
        parts.append(f"event: {event}\n")
    if retry is not None:
        parts.append(_retry_line(retry))
    # Always one space after the colon: the parser strips exactly one, so data that itself
    # starts with a space survives.
    parts.extend(f"data: {line}\n" for line in _LINE_END.split(data))
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    """A comment block (e.g. a keepalive); each line of `text` becomes its own comment line."""
    lines = _LINE_END.split(text)
    return ("".join(f": {line}\n" if line else ":\n" for line in lines) + "\n").encode()


def encode_retry(ms: int, *, id: str | int | None = None) -> bytes:
    """A `retry:` block; with `id`, it also sets the client's last event id.

    A block with no data dispatches no event, but the spec's parser still takes
    its `id:` as the last event id, which an `EventSource` sends back as
    `Last-Event-ID` on its next reconnect.
    """
    if id is not None:
        _reject_line_breaks("id", str(id))
    id_line = "" if id is None else f"id: {id}\n"
    return (_retry_line(ms) + id_line + "\n").encode()


def _retry_line(ms: int) -> str:
    if ms < 0:
        raise ValueError("SSE retry must be a non-negative integer (parsers ignore a sign)")
    return f"retry: {ms}\n"
