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
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.store.records import RawEvent
from models.events import StoredEvent
from models.ids import RunId
from subscribe.viewer import Frame, Viewer, frame_of, frame_of_raw

__all__ = ["Tail"]


class Tail:
    """A run's head and the viewers fed from it."""

    __slots__ = ("head", "run_id", "terminal", "viewers")

    def __init__(self, run_id: RunId, head: int) -> None:
        self.run_id = run_id
        self.head = head
        self.terminal: Frame | None = None
        self.viewers: set[Viewer] = set()

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

    def publish(self, events: Sequence[StoredEvent | RawEvent]) -> list[Frame]:
        """Encode the events that continue the head once, and offer them to every viewer."""
        frames: list[Frame] = []
        for event in events:
            if self.finished or event.seq != self.head + 1:
                continue
            frame = frame_of_raw(event) if isinstance(event, RawEvent) else frame_of(event)
            frames.append(frame)
            self.head = event.seq
            if frame.terminal:
                self.terminal = frame
        if frames:
            for viewer in self.viewers:
                viewer.offer(frames)
        return frames
