"""A tail: one run followed by this process, shared by all its local viewers.

The tail holds the run's head (the last seq it published) and its viewers.
It never reads the database itself: the hub reads every tail that needs it
in one statement and hands each tail its rows. The tail decrypts nothing
twice and encodes each event once (`frame_of`), then offers the same frames
to every viewer's bounded queue, so a run watched by a thousand viewers costs
the database what a run watched by one does.

Published frames are contiguous: rows that do not continue the head (a
sweep and a wake-up read that overlapped, or a read started from an older
head) are skipped, and the next read starts from the head again.

The tail keeps its most recent frames (`RING_FRAMES`, `RING_BYTES` at most):
a viewer joining a live run with its cursor among them catches up from
memory instead of reading the table (part 1 measured those joins' reads at
~23 % of the broker's time under fan-out). A viewer that had to read the
table hands the tail what it read (`seed`), so the next viewers joining from
as far back (a page reload replays the run from its start) find it in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from broker.store.records import PendingEvent, RawEvent
from models.events import StoredEvent
from models.ids import RunId
from subscribe.frame import frame_of_pending
from subscribe.viewer import Frame, Viewer, frame_of, frame_of_raw

__all__ = ["RING_BYTES", "RING_FRAMES", "Tail"]

RING_FRAMES = 1024
"""Recent frames a tail keeps for joining viewers."""
RING_BYTES = 512 * 1024
"""The same, in bytes of the frames' JSON (one frame at least)."""


class Tail:
    """A run's head and the viewers fed from it."""

    __slots__ = ("_ring", "_ring_bytes", "head", "run_id", "terminal", "viewers")

    def __init__(self, run_id: RunId, head: int) -> None:
        self.run_id = run_id
        self.head = head
        self.terminal: Frame | None = None
        self.viewers: set[Viewer] = set()
        self._ring: deque[Frame] = deque()
        self._ring_bytes = 0

    def recent(self, after: int) -> list[Frame] | None:
        """The frames after `after` through the head, if the ring still holds them all
        (None: read the table). Only what this tail published: its head's rows."""
        if not self._ring or self._ring[0].seq > after + 1:
            return None
        return [frame for frame in self._ring if frame.seq > after]

    def seed(self, frames: Sequence[Frame]) -> None:
        """Older frames read from the table by a viewer that caught up: kept in front of
        the ring if they end where it begins (or at the head of an empty ring), as many
        of the newest as its bounds allow, so the next viewers joining from as far back
        are served from memory."""
        first = self._ring[0].seq if self._ring else self.head + 1
        older = [frame for frame in frames if frame.seq < first]
        if not older or older[-1].seq != first - 1:
            return
        for frame in reversed(older):
            if len(self._ring) >= RING_FRAMES or self._ring_bytes + frame.size > RING_BYTES:
                return
            self._ring.appendleft(frame)
            self._ring_bytes += frame.size

    def _remember(self, frame: Frame) -> None:
        self._ring.append(frame)
        self._ring_bytes += frame.size
        while len(self._ring) > 1 and (
            len(self._ring) > RING_FRAMES or self._ring_bytes > RING_BYTES
        ):
            self._ring_bytes -= self._ring.popleft().size

    @property
    def finished(self) -> bool:
        return self.terminal is not None

    def add(self, viewer: Viewer) -> None:
        """Register a viewer; one joining after the end is handed the terminal frame."""
        self.viewers.add(viewer)
        if self.terminal is not None:
            # Its catch-up read finds the terminal event too, unless its cursor is
            # already past it; then this is what tells it the run is over.
            viewer.offer([self.terminal])

    def publish(self, events: Sequence[StoredEvent | RawEvent | PendingEvent]) -> list[Frame]:
        """Encode the events that continue the head once, and offer them to every viewer."""
        frames: list[Frame] = []
        for event in events:
            if self.finished or event.seq != self.head + 1:
                continue
            if isinstance(event, RawEvent):
                frame = frame_of_raw(event)
            elif isinstance(event, PendingEvent):
                frame = frame_of_pending(event)
            else:
                frame = frame_of(event)
            frames.append(frame)
            self._remember(frame)
            self.head = event.seq
            if frame.terminal:
                self.terminal = frame
        if frames:
            for viewer in self.viewers:
                viewer.offer(frames)
        return frames
