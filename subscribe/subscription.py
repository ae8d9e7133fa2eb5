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
from subscribe.viewer import (
    CATCH_UP_BYTES,
    CATCH_UP_LIMIT,
    Frame,
    FramePage,
    Hook,
    follow_batches,
    frame_of,
    frame_of_raw,
)

__all__ = [
    "due_batches",
    "due_frames",
    "ending_event",
    "is_finished",
    "live_batches",
    "live_frames",
]


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
    """The table of one run, as pages of frames bounded by rows and bytes (`catchup_reads`)."""

    def __init__(
        self, store: SubscriptionReads, metrics: Metrics, state: RunState, max_bytes: int
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._run_id = state.record.run_id
        self._max_bytes = max_bytes

    async def __call__(self, last: int, limit: int) -> FramePage:
        self._metrics.catchup_reads.inc()
        page = await self._store.read_raw_events(self._run_id, last, limit, self._max_bytes)
        return FramePage((frame_of_raw(e) for e in page), more=page.more)


class _RingFirst:
    """A live viewer's table: each read served from the tail's ring when the ring holds
    everything after the cursor (the viewer is registered, so what the tail publishes
    next is in its queue); the others from the table, whose pages seed the ring."""

    def __init__(self, hub: Hub, run_id: RunId, table: _Reader) -> None:
        self._hub = hub
        self._run_id = run_id
        self._table = table

    async def __call__(self, last: int, limit: int) -> FramePage:
        recent = self._hub.recent(self._run_id, last)
        if recent is not None:
            return FramePage(recent[:limit], more=len(recent) > limit)
        page = await self._table(last, limit)
        self._hub.seed(self._run_id, page)
        return page


async def due_batches(
    store: SubscriptionReads,
    metrics: Metrics,
    state: RunState,
    after: int,
    *,
    max_bytes: int = CATCH_UP_BYTES,
) -> AsyncGenerator[list[Frame], None]:
    """What the table holds after `after` now, one list per read (at most `CATCH_UP_LIMIT`
    frames and `max_bytes` stored bytes, one frame at least); for a finished run, through
    its ending."""
    read = _Reader(store, metrics, state, max_bytes)
    last = after
    while True:
        page = await read(last, CATCH_UP_LIMIT)
        if not page or page[0].seq != last + 1:
            break
        due: list[Frame] = []
        for frame in page:
            due.append(frame)
            last = frame.seq
            if frame.terminal:
                break
        yield due
        if due[-1].terminal:
            return
        if not page.more:
            break
    if is_finished(state) and last < state.head:
        # The rows are gone (retention): the run's row still says how it ended.
        messages: list[StoredMessage] = []
        if event_type_of_status(state.record.status) == "complete":
            messages = await store.list_messages(state.record.thread_id, run_id=state.record.run_id)
        yield [frame_of(ending_event(state, messages))]


async def due_frames(
    store: SubscriptionReads,
    metrics: Metrics,
    state: RunState,
    after: int,
    *,
    max_bytes: int = CATCH_UP_BYTES,
) -> AsyncGenerator[Frame, None]:
    """`due_batches`, one frame at a time."""
    batches = due_batches(store, metrics, state, after, max_bytes=max_bytes)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for frame in batch:
                yield frame


async def live_batches(
    hub: Hub,
    store: SubscriptionReads,
    metrics: Metrics,
    state: RunState,
    after: int,
    *,
    idle_s: float,
) -> AsyncGenerator[list[Frame] | None, None]:
    """Frames after `after` through the terminal one, as lists: every frame due at a
    wake-up (or read from the table at once) in one list, for one write to the client.
    None after every `idle_s` of silence."""
    if is_finished(state):
        finished = due_batches(store, metrics, state, after, max_bytes=hub.catchup_read_bytes)
        async with contextlib.aclosing(finished):
            async for batch in finished:
                yield batch
        return
    run_id = state.record.run_id
    viewer = hub.join(run_id, state.head)
    try:
        read = _RingFirst(hub, run_id, _Reader(store, metrics, state, hub.catchup_read_bytes))
        items = follow_batches(viewer, after, read, idle_s=idle_s, hook=_hook(hub, run_id))
        async with contextlib.aclosing(items):
            async for item in items:
                yield item
                del item  # not kept while the viewer idles (`follow_batches`)
    finally:
        hub.leave(viewer)


async def live_frames(
    hub: Hub,
    store: SubscriptionReads,
    metrics: Metrics,
    state: RunState,
    after: int,
    *,
    idle_s: float,
) -> AsyncGenerator[Frame | None, None]:
    """`live_batches`, one frame at a time (None after every `idle_s` of silence)."""
    batches = live_batches(hub, store, metrics, state, after, idle_s=idle_s)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if batch is None:
                yield None
                continue
            for frame in batch:
                yield frame


def _hook(hub: Hub, run_id: RunId) -> Hook | None:
    """The hub's hand-over hook (tests set one) bound to this run."""
    handover = hub.hook
    if handover is None:
        return None

    async def hook(stage: str) -> None:
        await handover(stage, run_id)

    return hook
