"""A frame: one stored event encoded for the wire once, and shared by every viewer.

`frame_of` encodes a parsed event; `frame_of_raw` builds the same bytes from a
decrypted row without parsing it (the catch-up and tail reads), so a row costs
one decryption and a splice on its way out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from broker.store.records import PendingEvent, RawEvent
from broker.store.sealing import decode_event, stamp
from broker.web.sse import encode_event
from broker.web.wirejson import dumps, escape_line_breaks
from models.events import TERMINAL_EVENT_TYPES, StoredEvent, is_terminal, parse_event

__all__ = ["Frame", "FramePage", "frame_of", "frame_of_pending", "frame_of_raw"]


class Frame:
    """A stored event encoded once, shared by every viewer that receives it.

    The JSON is kept once, as UTF-8 bytes (`size` counts them); the SSE block
    is built on first use and then shared, and the NDJSON line likewise. A
    frame made from a raw row (`frame_of_raw`) parses its event only if asked.
    """

    __slots__ = ("_event", "_ndjson", "_sse", "body", "seq", "terminal")

    def __init__(
        self, seq: int, body: bytes, *, terminal: bool, event: StoredEvent | None = None
    ) -> None:
        self.seq = seq
        self.body = body
        self.terminal = terminal
        self._event = event
        self._sse: bytes | None = None
        self._ndjson: bytes | None = None

    @property
    def event(self) -> StoredEvent:
        """The event, parsed from the JSON on first use if the frame was built from it."""
        if self._event is None:
            wire = json.loads(self.body)
            body = {"event_type": wire["event_type"], "data": wire["data"]}
            self._event = StoredEvent(seq=self.seq, ts=wire["ts"], event=parse_event(body))
        return self._event

    @property
    def size(self) -> int:
        """The event's JSON in bytes: what the byte budgets count."""
        return len(self.body)

    @property
    def json(self) -> str:
        return self.body.decode()

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = encode_event(self.body.decode(), id=self.seq)
        return self._sse

    @property
    def ndjson(self) -> bytes:
        if self._ndjson is None:
            self._ndjson = self.body + b"\n"
        return self._ndjson


class FramePage(list[Frame]):
    """Frames of one table read, and whether the table held more after the last."""

    def __init__(self, frames: Iterable[Frame] = (), *, more: bool = False) -> None:
        super().__init__(frames)
        self.more = more


def frame_of(event: StoredEvent) -> Frame:
    """Encode an event for the wire (its JSON; SSE and NDJSON on first use)."""
    text = dumps(event.to_wire())
    return Frame(event.seq, text.encode(), terminal=is_terminal(event.event), event=event)


_TYPE = b'{"event_type":"'
_TS = b',"ts":"'


def frame_of_raw(raw: RawEvent) -> Frame:
    """The frame of a decrypted row, without parsing it: `frame_of`'s JSON, spliced.

    The stored JSON is `{"event_type":…,"data":…,"ts":"<ISO>"}`
    (`broker.store.sealing.encode_event`); the wire's is the same with `seq`
    first and the time as `StoredEvent.to_wire` writes it. Anything else is
    parsed and encoded the long way.
    """
    text = raw.plaintext
    cut = text.rfind(_TS)
    end = text.find(b'"', len(_TYPE))
    if not text.startswith(_TYPE) or cut < 0 or end < 0 or not text.endswith(b'"}'):
        return frame_of(decode_event(raw.seq, text))
    ts = datetime.fromisoformat(text[cut + len(_TS) : -2].decode())
    terminal = text[len(_TYPE) : end].decode() in TERMINAL_EVENT_TYPES
    return _spliced(raw.seq, text[1:cut], ts, terminal)


def frame_of_pending(event: PendingEvent) -> Frame:
    """The frame of an event the flush has just stored, from its JSON and its time:
    what `frame_of_raw` makes of the row, without stamping the time in to cut it out."""
    if not event.body.startswith(_TYPE) or not event.body.endswith(b"}"):
        return frame_of_raw(RawEvent(event.seq, stamp(event.body, event.ts)))
    return _spliced(event.seq, event.body[1:-1], event.ts, event.terminal)


def _spliced(seq: int, fields: bytes, ts: datetime, terminal: bool) -> Frame:
    """`{"seq":…,<fields>,"ts":…}`, escaped as `dumps` writes it."""
    body = b'{"seq":%d,%s,"ts":"%s"}' % (seq, fields, _wire_ts(ts))
    if b"\xe2\x80\xa8" in body or b"\xe2\x80\xa9" in body or b"\xc2\x85" in body:
        body = escape_line_breaks(body.decode()).encode()  # as `dumps` writes them
    return Frame(seq, body, terminal=terminal)


def _wire_ts(ts: datetime) -> bytes:
    """`StoredEvent.to_wire`'s time: UTC, milliseconds, `Z` (a unit test holds them equal)."""
    utc = ts.astimezone(UTC)
    return b"%s.%03dZ" % (utc.strftime("%Y-%m-%dT%H:%M:%S").encode(), utc.microsecond // 1000)
