"""A viewer: one connection's bounded queue, and delivery by sequence number.

Design §9: a viewer remembers `last`, the seq it delivered last, and delivers
an event only if its seq is `last + 1`; seq ≤ `last` is a duplicate and is
dropped; seq > `last + 1` is a gap, filled by reading `seq > last` from the
table first. The catch-up/live hand-over follows from that one rule: the
viewer is registered with the run's tail *before* it reads the table, so
whatever the tail publishes meanwhile waits in the queue, and the rule drops
what the table read already delivered.

The queue is bounded. A viewer that falls behind (a slow client, a full
socket) is not allowed to grow it: the tail marks it overflowed and drops
its queue, and the viewer goes back to the table from `last`, as a new
viewer would. Memory stays bounded and nothing is skipped, because the table
is the truth and seqs are contiguous.

`follow` takes the table as a function (`ReadAfter`), so all of this is
tested without a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from broker.web.sse import encode_event
from broker.web.wirejson import dumps
from models.events import StoredEvent, is_terminal
from models.ids import RunId
from subscribe.errors import StreamBroken

__all__ = [
    "CATCH_UP_LIMIT",
    "Disposition",
    "Frame",
    "Hook",
    "ReadAfter",
    "Viewer",
    "classify",
    "follow",
    "frame_of",
]

CATCH_UP_LIMIT = 500
"""Rows per table read while catching up: bounds a viewer's memory, not its progress."""

ReadAfter = Callable[[int, int], Awaitable[Sequence["Frame"]]]
"""`read_after(last, limit)`: up to `limit` frames of the table with `seq > last`, in order."""

Hook = Callable[[str], Awaitable[None]]
"""Called at the hand-over's stages, "registered" and "caught_up" (tests force races there)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A stored event encoded once, shared by every viewer that receives it."""

    event: StoredEvent
    json: str
    sse: bytes
    ndjson: bytes

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def terminal(self) -> bool:
        return is_terminal(self.event.event)


def frame_of(event: StoredEvent) -> Frame:
    """Encode an event for the wire: its JSON, SSE frame and NDJSON line."""
    text = dumps(event.to_wire())
    return Frame(event, text, encode_event(text, id=event.seq), (text + "\n").encode())


class Disposition(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"


def classify(last: int, seq: int) -> Disposition:
    """What the delivery rule does with `seq` after having delivered `last`."""
    if seq <= last:
        return Disposition.DUPLICATE
    if seq == last + 1:
        return Disposition.DELIVER
    return Disposition.GAP


class Viewer:
    """One connection's place in a run's tail: a bounded queue of frames."""

    __slots__ = ("_queue", "_ready", "closed", "maxsize", "overflowed", "run_id")

    def __init__(self, run_id: RunId, maxsize: int) -> None:
        self.run_id = run_id
        self.maxsize = maxsize
        self.overflowed = False
        self.closed = False
        self._queue: deque[Frame] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, frames: Sequence[Frame]) -> None:
        """Queue frames from the tail; past `maxsize`, drop the queue and cut the viewer loose."""
        if self.closed or not frames:
            return
        if not self.overflowed and len(self._queue) + len(frames) <= self.maxsize:
            self._queue.extend(frames)
        else:
            self.overflowed = True
            self._queue.clear()
            if frames[-1].terminal:
                # Kept: a viewer whose cursor is already past the table's end learns
                # from it alone that nothing more will come.
                self._queue.append(frames[-1])
        self._ready.set()

    def close(self) -> None:
        """End the viewer's stream at its next wait (the process is shutting down)."""
        self.closed = True
        self._queue.clear()
        self._ready.set()

    async def wait(self, idle_s: float) -> bool:
        """Wait until frames, an overflow or a close is pending; False after `idle_s` idle."""
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(idle_s):
                    await self._ready.wait()
            except TimeoutError:
                return False
        return True

    def take(self) -> tuple[list[Frame], bool]:
        """Everything queued, and whether frames were dropped since the last take."""
        frames = list(self._queue)
        overflowed = self.overflowed
        self._queue.clear()
        self.overflowed = False
        self._ready.clear()
        return frames, overflowed


class _Position:
    """The `last` of the delivery rule, shared by `follow` and its table reads,
    and whether the terminal frame has been delivered (nothing may follow it)."""

    __slots__ = ("ended", "last")

    def __init__(self, last: int) -> None:
        self.last = last
        self.ended = False

    def advance(self, frame: Frame) -> None:
        self.last = frame.seq
        self.ended = frame.terminal


async def _from_table(
    read_after: ReadAfter, position: _Position, limit: int
) -> AsyncGenerator[Frame, None]:
    """The table's frames after `position.last` up to its end (or the terminal one)."""
    while True:
        batch = await read_after(position.last, limit)
        for frame in batch:
            if classify(position.last, frame.seq) is not Disposition.DELIVER:
                # The table is a contiguous prefix; anything else means rows went missing.
                if frame.seq <= position.last:
                    continue
                raise StreamBroken(f"table gap after seq {position.last} (next {frame.seq})")
            position.advance(frame)
            yield frame
            if position.ended:
                return
        if len(batch) < limit:
            return


async def _table(
    read_after: ReadAfter, position: _Position, limit: int
) -> AsyncGenerator[Frame, None]:
    """`_from_table`, closed properly however the consumer stops."""
    async with contextlib.aclosing(_from_table(read_after, position, limit)) as rows:
        async for frame in rows:
            yield frame


async def follow(
    viewer: Viewer,
    after: int,
    read_after: ReadAfter,
    *,
    idle_s: float,
    limit: int = CATCH_UP_LIMIT,
    hook: Hook | None = None,
) -> AsyncGenerator[Frame | None, None]:
    """A registered viewer's frames after `after`, through the terminal one.

    Yields None after every `idle_s` without frames (the caller's keepalive).
    Returns after the terminal frame, or when the viewer is closed.
    """
    position = _Position(after)
    if hook is not None:
        await hook("registered")
    async for frame in _table(read_after, position, limit):
        yield frame
    if position.ended:
        return
    if hook is not None:
        await hook("caught_up")
    while not viewer.closed:
        if not await viewer.wait(idle_s):
            yield None
            continue
        frames, overflowed = viewer.take()
        if overflowed:
            # Cut loose: everything the queue dropped is in the table. Frames the tail
            # publishes while this reads are queued again, so the hand-over is the same
            # as a new viewer's. (`frames` holds at most the kept terminal frame.)
            async for frame in _table(read_after, position, limit):
                yield frame
            if position.ended:
                return
        for frame in frames:
            if classify(position.last, frame.seq) is Disposition.GAP:
                async for missing in _table(read_after, position, limit):
                    yield missing
                if position.ended:
                    return
                if classify(position.last, frame.seq) is Disposition.GAP:
                    raise StreamBroken(f"seq {position.last + 1} is not in the table")
            if classify(position.last, frame.seq) is Disposition.DUPLICATE:
                if frame.terminal:
                    return  # the cursor was at or past the end: nothing more will come
                continue
            position.advance(frame)
            yield frame
            if position.ended:
                return
