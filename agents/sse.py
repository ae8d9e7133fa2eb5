"""The SSE framing of the agent → broker stream: `id: <n>` + `data: <event JSON>`.

The agent may not import the broker, so it encodes its own frames; the
broker's parser reads them. An event's JSON never holds a raw CR or LF
(JSON escapes both), so one `data:` line always carries the whole event.
"""

from __future__ import annotations

from typing import Final

from models.events import StreamEvent

__all__ = ["KEEPALIVE", "encode_frame", "parse_last_event_id"]

KEEPALIVE: Final[bytes] = b": keepalive\n\n"


def encode_frame(seq: int, event: StreamEvent) -> bytes:
    """One SSE frame: `id: <seq>\\ndata: {"event_type": ..., "data": {...}}\\n\\n`."""
    return b"id: %d\ndata: %s\n\n" % (seq, event.model_dump_json().encode())


def parse_last_event_id(value: str | None) -> int:
    """The cursor of a `Last-Event-ID` header: absent or empty → 0 (from the start).

    Raises `ValueError` for anything but a non-negative decimal integer.
    """
    if value is None or not value.strip():
        return 0
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"Last-Event-ID must be a non-negative integer, got {value!r}")
    return int(text)
