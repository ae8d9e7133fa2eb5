"""`RunBuffer`: one run's events, encoded once, appended in order, read by cursor.

The run's supervisor appends; any number of readers follow from their own
cursor (`frames_after` + `wait_beyond`), which is what makes re-attaching with
`Last-Event-ID` exact: the buffer is the run's whole history, ids counting
from 1, so resuming after `n` is a slice.

It is bounded: a run that reaches `max_events - 1` events gets a terminal
`error` (`buffer_overflow`) in the last slot and takes nothing more, rather
than growing without limit while a slow or absent broker reads nothing.
Events already read are kept, because the agent cannot know which of them the
broker has durably stored; a re-attach may ask for any of them.

Exactly one terminal event: after `complete`, `error` or `cancelled`, appends
are ignored, so a late cancel cannot follow a `complete`.
"""

from __future__ import annotations

import asyncio
import contextlib

from agents.sse import encode_frame
from models.events import ErrorData, ErrorEvent, StreamEvent, is_terminal

__all__ = ["BUFFER_OVERFLOW", "RunBuffer"]

BUFFER_OVERFLOW = "buffer_overflow"


class RunBuffer:
    """Append-only, bounded log of one run's SSE frames, with wake-ups for readers."""

    __slots__ = ("_changed", "_frames", "_last_event", "_max_events", "_terminal_seq")

    def __init__(self, max_events: int) -> None:
        if max_events < 2:
            raise ValueError("a run buffer needs room for one event and a terminal event")
        self._max_events = max_events
        self._frames: list[bytes] = []
        self._terminal_seq: int | None = None
        self._last_event: StreamEvent | None = None
        self._changed = asyncio.Event()

    @property
    def head(self) -> int:
        """The id of the last event appended (0 before the first)."""
        return len(self._frames)

    @property
    def closed(self) -> bool:
        """Whether the terminal event has been appended."""
        return self._terminal_seq is not None

    @property
    def terminal_seq(self) -> int | None:
        return self._terminal_seq

    @property
    def last_event(self) -> StreamEvent | None:
        return self._last_event

    def append(self, event: StreamEvent) -> bool:
        """Add an event; returns whether the buffer takes more after it.

        Ignored (False) once closed. A non-terminal event that would leave no
        room for a terminal one is replaced by the `buffer_overflow` error.
        """
        if self.closed:
            return False
        if not is_terminal(event) and self.head >= self._max_events - 1:
            event = ErrorEvent(
                data=ErrorData(
                    error=f"the run produced more than {self._max_events - 1} events",
                    error_type=BUFFER_OVERFLOW,
                )
            )
        self._frames.append(encode_frame(self.head + 1, event))
        self._last_event = event
        if is_terminal(event):
            self._terminal_seq = self.head
        # Swap the event so each reader waits on the state it has seen.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return not self.closed

    def close(self, terminal: StreamEvent) -> bool:
        """Append `terminal` unless the run already ended; returns whether it was appended."""
        if not is_terminal(terminal):
            raise ValueError(f"{terminal.event_type!r} is not a terminal event")
        if self.closed:
            return False
        self.append(terminal)
        return True

    def frames_after(self, seq: int, limit: int | None = None) -> list[bytes]:
        """The frames with id > `seq`, in order, at most `limit` (empty if none yet)."""
        start = max(seq, 0)
        return self._frames[start : None if limit is None else start + limit]

    async def wait_beyond(self, seq: int, within_s: float) -> bool:
        """Wait until an event with id > `seq` exists; False if none came in `within_s`."""
        changed = self._changed
        if self.head > seq:
            return True
        if self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), within_s)
        return self.head > seq
