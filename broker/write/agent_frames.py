"""Frames from the agent's stream: which become run events, and why the others are dropped.

The producer takes only events of the union (design 4.3) that the agent may
send, under a size bound; anything else is logged and dropped, never a crash.
"""

from __future__ import annotations

from pydantic import ValidationError

from broker.web.sse import ServerSentEvent
from models.events import StreamEvent, parse_event_json

__all__ = ["interpret_frame"]

# Events only the broker writes: an agent sending one is a protocol error.
_BROKER_ONLY = frozenset({"run_started"})
# `runs.agent_cursor` is varchar(200); an id that cannot be recorded cannot be resumed from.
_AGENT_ID_MAX = 200


def interpret_frame(frame: ServerSentEvent, *, max_bytes: int | None = None) -> StreamEvent | str:
    """A frame's typed event, or why it is dropped.

    Reasons: `bad_id`, `oversized` (its data over `max_bytes` UTF-8 bytes, checked
    before it is parsed), `malformed`, `broker_only`.
    """
    if frame.id is not None and len(frame.id) > _AGENT_ID_MAX:
        return "bad_id"
    if max_bytes is not None and _over_utf8_bytes(frame.data, max_bytes):
        return "oversized"
    try:
        event = parse_event_json(frame.data)
    except ValidationError:
        return "malformed"
    if event.event_type in _BROKER_ONLY:
        return "broker_only"
    return event


def _over_utf8_bytes(text: str, limit: int) -> bool:
    """Whether `text` is over `limit` bytes in UTF-8; its length alone mostly settles it."""
    if len(text) > limit:
        return True  # at least one byte a character
    if len(text) * 4 <= limit:
        return False  # at most four
    return len(text.encode("utf-8", "surrogatepass")) > limit
