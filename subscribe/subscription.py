"""A subscription: one request's frames of a run, from its cursor to the end.

A run still streaming is followed live: the viewer joins the run's tail in
the hub first, then catches up from the table, then follows the tail (the
hand-over of `subscribe.viewer`). A finished run is read from the table and
closed at once; there is nothing to wait for and no tail is created.

Retention (design 4.3): once the retention job has deleted a finished run's
raw events, a subscriber whose cursor is below the terminal seq gets one
event with the terminal seq, rebuilt from the run's row — `complete` with
the persisted assistant messages, `error`, or `cancelled` — so a client
reducer that replaces its transcript on `complete` shows the right state.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence

from broker.store.ports import SubscriptionReads
from broker.store.records import RunState, StoredMessage
from broker.web.metrics import Metrics
from models.events import (
    Cancelled,
    CancelledData,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    StoredEvent,
    StreamEvent,
)
from models.ids import RunId
from models.status import TERMINAL_STATUSES, event_type_of_status
from subscribe.hub import Hub
from subscribe.viewer import CATCH_UP_LIMIT, Frame, Hook, follow, frame_of

__all__ = ["due_frames", "ending_event", "is_finished", "live_frames"]


def is_finished(state: RunState) -> bool:
    return state.record.status in TERMINAL_STATUSES


def ending_event(state: RunState, messages: Sequence[StoredMessage]) -> StoredEvent:
    """The terminal event of a finished run, rebuilt from its row and transcript."""
    record = state.record
    event: StreamEvent
    shown_as = event_type_of_status(record.status)
    if shown_as == "complete":
        assistant = [m.message for m in messages if m.message.role == "assistant"]
        event = Complete(data=CompleteData(new_messages=assistant))
    elif shown_as == "cancelled":
        event = Cancelled(data=CancelledData(by=state.aborted_by))
    else:
        event = ErrorEvent(
            data=ErrorData(
                error=record.error or f"the run ended {record.status}",
                error_type=record.error_type or record.status,
            )
        )
    return StoredEvent(seq=state.head, ts=record.finished_at or record.created_at, event=event)


class _Reader:
    """The table of one run, as frames, counted in `catchup_reads`."""

    def __init__(self, store: SubscriptionReads, metrics: Metrics, state: RunState) -> None:
        self._store = store
        self._metrics = metrics
        self._run_id = state.record.run_id

    async def __call__(self, last: int, limit: int) -> list[Frame]:
        self._metrics.catchup_reads.inc()
        return [frame_of(e) for e in await self._store.read_events(self._run_id, last, limit)]


async def due_frames(
    store: SubscriptionReads, metrics: Metrics, state: RunState, after: int
) -> AsyncGenerator[Frame, None]:
    """What the table holds after `after` now; for a finished run, through its ending."""
    read = _Reader(store, metrics, state)
    last = after
    while True:
        batch = await read(last, CATCH_UP_LIMIT)
        if not batch or batch[0].seq != last + 1:
            break
        for frame in batch:
            yield frame
            last = frame.seq
            if frame.terminal:
                return
        if len(batch) < CATCH_UP_LIMIT:
            break
    if is_finished(state) and last < state.head:
        # The rows are gone (retention): the run's row still says how it ended.
        messages: list[StoredMessage] = []
        if event_type_of_status(state.record.status) == "complete":
            messages = await store.list_messages(state.record.thread_id, run_id=state.record.run_id)
        yield frame_of(ending_event(state, messages))


async def live_frames(
    hub: Hub,
    store: SubscriptionReads,
    metrics: Metrics,
    state: RunState,
    after: int,
    *,
    idle_s: float,
) -> AsyncGenerator[Frame | None, None]:
    """Frames after `after` through the terminal one; None after every `idle_s` of silence."""
    if is_finished(state):
        async for frame in due_frames(store, metrics, state, after):
            yield frame
        return
    run_id = state.record.run_id
    viewer = hub.join(run_id, state.head)
    try:
        items = follow(
            viewer, after, _Reader(store, metrics, state), idle_s=idle_s, hook=_hook(hub, run_id)
        )
        async with contextlib.aclosing(items):
            async for item in items:
                yield item
    finally:
        hub.leave(viewer)


def _hook(hub: Hub, run_id: RunId) -> Hook | None:
    """The hub's hand-over hook (tests set one) bound to this run."""
    handover = hub.hook
    if handover is None:
        return None

    async def hook(stage: str) -> None:
        await handover(stage, run_id)

    return hook
