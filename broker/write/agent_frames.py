"""Frames from the agent's stream: which become run events, and why the others are dropped.

The producer takes only events of the union (design 4.3) that the agent may
send, under a size bound; anything else is logged and dropped, never a crash.
It takes them `paced`: in turns, and not while the stream manager is
backlogged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from pydantic import ValidationError

from broker.web.sse import ServerSentEvent
from models.events import StreamEvent, parse_event_json

__all__ = ["Backlog", "interpret_frame", "paced"]

# Events only the broker writes: an agent sending one is a protocol error.
_BROKER_ONLY = frozenset({"run_started"})
# `runs.agent_cursor` is varchar(200); an id that cannot be recorded cannot be resumed from.
_AGENT_ID_MAX = 200
# Frames taken before the loop runs others: a 64 KiB read of a fast agent is ~400 frames,
# ~10 ms of work, and 50 producers at once had held /healthz for 100s of ms.
FRAMES_PER_TURN = 8


class Backlog(Protocol):
    """The stream manager as pacing sees it (`StreamManager.backlogged`)."""

    @property
    def backlogged(self) -> bool: ...

    async def until_room(self) -> None: ...


async def paced(
    frames: AsyncIterable[ServerSentEvent], backlog: Backlog
) -> AsyncIterator[ServerSentEvent]:
    """`frames`, letting the event loop run others every `FRAMES_PER_TURN`, and waiting
    while `backlog` is backlogged (backpressure: the agent keeps the events meanwhile)."""
    taken = 0
    async for frame in frames:
        yield frame
        taken += 1
        if backlog.backlogged:
            await backlog.until_room()
        elif taken % FRAMES_PER_TURN == 0:
            await asyncio.sleep(0)


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
