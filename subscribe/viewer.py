"""A viewer: one connection's bounded queue, and delivery by sequence number.

Design §9: a viewer remembers `last`, the seq it delivered last, and delivers
an event only if its seq is `last + 1`; seq ≤ `last` is a duplicate and is
dropped; seq > `last + 1` is a gap, filled by reading `seq > last` from the
table first. The catch-up/live hand-over follows from that one rule: the
viewer is registered with the run's tail *before* it reads the table, so
whatever the tail publishes meanwhile waits in the queue, and the rule drops
what the table read already delivered.

The queue is bounded, in frames and in bytes. A viewer that falls behind (a slow client, a full
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
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from models.ids import RunId
from subscribe.errors import StreamBroken
from subscribe.frame import Frame, FramePage, frame_of, frame_of_raw

__all__ = [
    "CATCH_UP_BYTES",
    "CATCH_UP_LIMIT",
    "QUEUE_BYTES",
    "Disposition",
    "Frame",
    "FramePage",
    "Hook",
    "ReadAfter",
    "Viewer",
    "classify",
    "follow",
    "follow_batches",
    "frame_of",
    "frame_of_raw",
]

CATCH_UP_LIMIT = 10_000
"""Rows per table read while catching up. Memory is bounded by `CATCH_UP_BYTES`; this
only caps the row count of small events (a 10,000-event run was 21 reads of 500)."""

CATCH_UP_BYTES = 4 * 1024 * 1024
"""Stored bytes per table read (one event at least): what bounds a reader's memory."""

QUEUE_BYTES = 8 * 1024 * 1024
"""A viewer queue's default byte budget (the queued frames' JSON)."""

ReadAfter = Callable[[int, int], Awaitable[Sequence["Frame"]]]
"""`read_after(last, limit)`: up to `limit` frames of the table with `seq > last`, in order.

A `FramePage` says whether the table holds more; a plain sequence is taken to
be the end once it is shorter than `limit`."""

Hook = Callable[[str], Awaitable[None]]
"""Called at the hand-over's stages, "registered" and "caught_up" (tests force races there)."""


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
    """One connection's place in a run's tail: a queue bounded in frames and in bytes."""

    __slots__ = (
        "_bytes",
        "_expired",
        "_pending",
        "_queue",
        "_timer",
        "_waiter",
        "closed",
        "max_bytes",
        "maxsize",
        "overflowed",
        "run_id",
    )

    def __init__(self, run_id: RunId, maxsize: int, max_bytes: int = QUEUE_BYTES) -> None:
        self.run_id = run_id
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.overflowed = False
        self.closed = False
        # A list, not a deque: an empty deque holds a 64-slot block (~600 B) per idle viewer.
        self._queue: list[Frame] = []
        self._bytes = 0
        # `_pending` and a future made only while waiting stand for an `asyncio.Event`,
        # which would hold a deque of waiters of its own.
        self._pending = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """The queued frames' JSON, in bytes (never above `max_bytes` but for a lone
        terminal frame kept after an overflow)."""
        return self._bytes

    def offer(self, frames: Sequence[Frame]) -> None:
        """Queue frames from the tail; past `maxsize` frames or `max_bytes`, drop the queue
        and cut the viewer loose (it reads the table from its cursor)."""
        if self.closed or not frames:
            return
        size = sum(frame.size for frame in frames)
        fits = len(self._queue) + len(frames) <= self.maxsize
        if not self.overflowed and fits and self._bytes + size <= self.max_bytes:
            self._queue.extend(frames)
            self._bytes += size
        else:
            self.overflowed = True
            self._queue.clear()
            self._bytes = 0
            if frames[-1].terminal:
                # Kept: a viewer whose cursor is already past the table's end learns
                # from it alone that nothing more will come.
                self._queue.append(frames[-1])
                self._bytes = frames[-1].size
        self._wake()

    def close(self) -> None:
        """End the viewer's stream at its next wait (shutdown), and drop its timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed = True
        self._queue = []
        self._bytes = 0
        self._wake()

    async def wait(self, idle_s: float) -> bool:
        """Wait until frames, an overflow or a close is pending (True), or the viewer's
        idle deadline passes (False: time for a keepalive).

        One timer per viewer, armed for `idle_s` and re-armed only when it fires,
        not a timeout per wait: a keepalive comes at most every `idle_s`, and may
        come between frames of a busy stream (it costs a comment line).
        """
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(idle_s, self._on_deadline)
        if not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._queue or self.overflowed or self.closed:
            return True
        self._pending = False  # woken by the deadline alone
        self._expired = False
        return False

    def _on_deadline(self) -> None:
        self._timer = None
        self._expired = True
        self._wake()

    def _wake(self) -> None:
        self._pending = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> tuple[list[Frame], bool]:
        """Everything queued, and whether frames were dropped since the last take."""
        frames, self._queue = self._queue, []
        overflowed = self.overflowed
        self._bytes = 0
        self.overflowed = False
        if not self._expired:
            self._pending = False  # else the next wait reports the deadline at once
        return frames, overflowed


class _Position:
    """The `last` of the delivery rule, shared by `follow` and its table reads,
    and whether the stream has ended: the terminal frame delivered, or known to
    lie at or before the cursor (nothing may follow it)."""

    __slots__ = ("ended", "last")

    def __init__(self, last: int) -> None:
        self.last = last
        self.ended = False

    def advance(self, frame: Frame) -> None:
        self.last = frame.seq
        self.ended = frame.terminal


async def _from_table(
    read_after: ReadAfter, position: _Position, limit: int
) -> AsyncGenerator[list[Frame], None]:
    """The table's frames after `position.last` up to its end (or the terminal one),
    one list per read."""
    while True:
        batch = await read_after(position.last, limit)
        due: list[Frame] = []
        for frame in batch:
            if classify(position.last, frame.seq) is not Disposition.DELIVER:
                # The table is a contiguous prefix; anything else means rows went missing.
                if frame.seq <= position.last:
                    continue
                if due:
                    yield due
                raise StreamBroken(f"table gap after seq {position.last} (next {frame.seq})")
            position.advance(frame)
            due.append(frame)
            if position.ended:
                break
        if due:
            yield due
        if position.ended:
            return
        more = batch.more if isinstance(batch, FramePage) else len(batch) >= limit
        if not more:
            return


async def _table(
    read_after: ReadAfter, position: _Position, limit: int
) -> AsyncGenerator[list[Frame], None]:
    """`_from_table`, closed properly however the consumer stops."""
    async with contextlib.aclosing(_from_table(read_after, position, limit)) as pages:
        async for page in pages:
            yield page


async def follow_batches(
    viewer: Viewer,
    after: int,
    read_after: ReadAfter,
    *,
    idle_s: float,
    limit: int = CATCH_UP_LIMIT,
    hook: Hook | None = None,
) -> AsyncGenerator[list[Frame] | None, None]:
    """A registered viewer's frames after `after`, through the terminal one, as lists:
    one per table read and one per wake-up (every frame due at that moment).

    Yields None after every `idle_s` without frames (the caller's keepalive).
    Returns after the terminal frame, or when the viewer is closed.
    """
    position = _Position(after)
    if hook is not None:
        await hook("registered")
    # `del` after each yield: a suspended generator keeps its locals, and an idle
    # viewer would keep its last page (up to a table read's bytes) for as long as it idles.
    async for page in _table(read_after, position, limit):
        yield page
        del page
    if position.ended:
        return
    if hook is not None:
        await hook("caught_up")
    while not viewer.closed:
        if not await viewer.wait(idle_s):
            yield None
            continue
        batches = _wake_up(*viewer.take(), read_after, position, limit)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch
                del batch
        del batches
        if position.ended:
            return


async def _wake_up(
    frames: list[Frame],
    overflowed: bool,
    read_after: ReadAfter,
    position: _Position,
    limit: int,
) -> AsyncGenerator[list[Frame], None]:
    """What one wake-up delivers: the taken `frames` by the delivery rule, gaps and
    an overflow filled from the table. Sets `position.ended` when nothing more will come."""
    if overflowed:
        # Cut loose: everything the queue dropped is in the table. Frames the tail
        # publishes while this reads are queued again, so the hand-over is the same
        # as a new viewer's. (`frames` holds at most the kept terminal frame.)
        async for page in _table(read_after, position, limit):
            yield page
        if position.ended:
            return
    due: list[Frame] = []
    for frame in frames:
        if classify(position.last, frame.seq) is Disposition.GAP:
            if due:
                yield due
                due = []
            async for page in _table(read_after, position, limit):
                yield page
            if position.ended:
                return
            if classify(position.last, frame.seq) is Disposition.GAP:
                raise StreamBroken(f"seq {position.last + 1} is not in the table")
        if classify(position.last, frame.seq) is Disposition.DUPLICATE:
            if frame.terminal:
                break  # the cursor was at or past the end: nothing more will come
            continue
        position.advance(frame)
        due.append(frame)
        if position.ended:
            break
    if due:
        yield due
    if frames and frames[-1].terminal and position.last >= frames[-1].seq:
        position.ended = True


async def follow(
    viewer: Viewer,
    after: int,
    read_after: ReadAfter,
    *,
    idle_s: float,
    limit: int = CATCH_UP_LIMIT,
    hook: Hook | None = None,
) -> AsyncGenerator[Frame | None, None]:
    """`follow_batches`, one frame at a time (None: the caller's keepalive)."""
    batches = follow_batches(viewer, after, read_after, idle_s=idle_s, limit=limit, hook=hook)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if batch is None:
                yield None
                continue
            for frame in batch:
                yield frame
