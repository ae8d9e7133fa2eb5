"""The hub: every tail of this process, the one reader that feeds them, the wake-ups.

Design sections 2 and 7: one LISTEN connection and one tail per active run
per process, however many viewers, so database reads grow with runs, not
with viewers. The hub goes one step further than a task per tail: a single
reader task does every read, and each read is ONE statement
(`TailPort.read_events_many`) for all the runs it covers:

- a NOTIFY `run_id:seq` for a run tailed here whose head is behind `seq`
  marks that run dirty and wakes the reader, which reads every dirty run at
  once (under load, wake-ups that arrive during a read are batched into the
  next one);
- every `poll_interval_s` the reader sweeps all unfinished tails in one
  statement: the fallback that makes a lost notification cost latency only;
- after the LISTEN connection (re)connects, the next read is a sweep.

The same connection carries the cancel wake-ups (`run_cancel`): the hub only
parses them and hands each `(run_id, member)` to `on_cancel`, the write
side's callback wired by the app factory (features never import each other).
A lost cancel wake-up costs latency only: the flush loop polls the flag.

At 1,000 active runs that is a handful of statements per poll interval
instead of 1,000 (one cursor poll costs ~100 µs of CPU; a batched one ~4 µs
per run). A tail exists while its run has a viewer here; the last viewer to
leave removes it. Shutdown (`aclose`) stops the reader and the listener and
closes every viewer, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

import structlog

from broker.store.notify import parse_cancel, parse_notify
from broker.store.ports import TailPort
from broker.store.records import PendingEvent
from broker.web.metrics import Metrics
from broker.web.settings import Settings
from models.ids import RunId
from subscribe.listener import Listener
from subscribe.tail import Tail
from subscribe.viewer import CATCH_UP_BYTES, QUEUE_BYTES, Frame, Viewer

__all__ = ["CancelHook", "HandoverHook", "Hub"]

log = structlog.get_logger(__name__)

HandoverHook = Callable[[str, RunId], Awaitable[None]]
"""Tests set `Hub.hook` to act at a viewer's hand-over stages ("registered", "caught_up")."""

CancelHook = Callable[[RunId, str], None]
"""Told of every cancel wake-up: the run and the member who asked."""

READ_LIMIT = 500
"""Rows per run per read (and `catchup_read_bytes` of them); a run cut by either bound is
read again at once."""


class Hub:
    """This process's tails, their reader task and the LISTEN connection."""

    def __init__(
        self,
        store: TailPort,
        metrics: Metrics,
        *,
        poll_interval_s: float,
        viewer_queue_max: int,
        viewer_queue_max_bytes: int = QUEUE_BYTES,
        catchup_read_bytes: int = CATCH_UP_BYTES,
        listen: bool = True,
        listen_retry_s: tuple[float, float] = (0.1, 5.0),
        read_limit: int = READ_LIMIT,
        on_cancel: CancelHook | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._poll_s = poll_interval_s
        self._queue_max = viewer_queue_max
        self._queue_max_bytes = viewer_queue_max_bytes
        self.catchup_read_bytes = catchup_read_bytes
        """Stored bytes per table read, for a tail's read and a viewer's catch-up alike."""
        self._read_limit = read_limit
        self._tails: dict[RunId, Tail] = {}
        self._dirty: set[RunId] = set()
        self._sweep_due = False
        self._wake = asyncio.Event()
        # One read in flight at a time: an explicit sweep waits for the loop's read.
        self._reading = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._cancel_hook = on_cancel
        self.listener: Listener | None = None
        if listen:
            self.listener = Listener(
                store,
                self._on_notify,
                self._on_listen,
                on_cancel=self._on_cancel if on_cancel is not None else None,
                retry_s=listen_retry_s,
            )
        self.hook: HandoverHook | None = None

    @classmethod
    def for_settings(
        cls,
        store: TailPort,
        metrics: Metrics,
        settings: Settings,
        *,
        on_cancel: CancelHook | None = None,
    ) -> Hub:
        """The hub of a broker process configured by `settings`."""
        return cls(
            store,
            metrics,
            poll_interval_s=settings.poll_interval_ms / 1000,
            viewer_queue_max=settings.viewer_queue_max,
            viewer_queue_max_bytes=settings.viewer_queue_max_bytes,
            catchup_read_bytes=settings.catchup_read_bytes,
            on_cancel=on_cancel,
        )

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Hub:
        self._tasks.append(asyncio.create_task(self._read_loop(), name="subscribe.hub.reader"))
        if self.listener is not None:
            self._tasks.append(
                asyncio.create_task(self.listener.run(), name="subscribe.hub.listener")
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every viewer (their streams end; clients resume elsewhere) and stop."""
        for tail in self._tails.values():
            for viewer in tail.viewers:
                viewer.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        return tuple(self._tasks)

    # --- viewers ----------------------------------------------------------------------

    def join(self, run_id: RunId, head: int) -> Viewer:
        """Register a viewer with the run's tail (creating it, from `head`, if none)."""
        tail = self._tails.get(run_id)
        if tail is None:
            tail = self._tails[run_id] = Tail(run_id, head)
            self._metrics.tails.inc()
            # Rows committed since `head` was read sent their NOTIFY before this tail
            # existed: read once now rather than at the next sweep.
            self._mark_dirty(run_id)
        viewer = Viewer(run_id, self._queue_max, self._queue_max_bytes)
        tail.add(viewer)
        self._metrics.viewers.inc()
        return viewer

    def leave(self, viewer: Viewer) -> None:
        """Unregister a viewer; the last one out removes the tail."""
        tail = self._tails.get(viewer.run_id)
        if tail is None or viewer not in tail.viewers:
            return
        tail.viewers.discard(viewer)
        viewer.close()  # nothing reads it any more: drop its timer now
        self._metrics.viewers.dec()
        if not tail.viewers:
            del self._tails[viewer.run_id]
            self._dirty.discard(viewer.run_id)
            self._metrics.tails.dec()

    @property
    def tail_count(self) -> int:
        return len(self._tails)

    @property
    def viewer_count(self) -> int:
        return sum(len(tail.viewers) for tail in self._tails.values())

    def recent(self, run_id: RunId, after: int) -> list[Frame] | None:
        """The run's frames after `after` from its tail's ring, None if not all there."""
        tail = self._tails.get(run_id)
        return tail.recent(after) if tail is not None else None

    def seed(self, run_id: RunId, frames: Sequence[Frame]) -> None:
        """Frames a viewer read from the table, for the run's ring (`Tail.seed`)."""
        tail = self._tails.get(run_id)
        if tail is not None:
            tail.seed(frames)

    def tail_head(self, run_id: RunId) -> int | None:
        """The last seq the run's tail published here, None if it is not tailed."""
        tail = self._tails.get(run_id)
        return tail.head if tail is not None else None

    def publish_stored(self, run_id: RunId, events: Sequence[PendingEvent]) -> None:
        """Events this process has just committed: its tail takes them without a read.

        The write side's `StreamManager.on_stored`. Only rows already in the table
        come here, so a viewer sees nothing the table does not hold; the tail keeps
        only those that continue its head (the others come by the usual read, which
        their NOTIFY or the sweep starts), so nothing is published twice.
        """
        tail = self._tails.get(run_id)
        if tail is None or tail.finished or not events or events[0].seq != tail.head + 1:
            return
        tail.publish(events)

    # --- reading ----------------------------------------------------------------------

    async def sweep(self) -> None:
        """Read every unfinished tail past its head: one statement, however many tails."""
        async with self._reading:
            self._dirty.clear()
            await self._read(
                {run_id: t.head for run_id, t in self._tails.items() if not t.finished}
            )

    async def _read_dirty(self) -> None:
        async with self._reading:
            dirty, self._dirty = self._dirty, set()
            tails = [t for run_id in dirty if (t := self._tails.get(run_id)) and not t.finished]
            await self._read({tail.run_id: tail.head for tail in tails})

    async def _read(self, heads: Mapping[RunId, int]) -> None:
        """One statement for the tails' `heads` (the caller holds `_reading`), then published."""
        if not heads:
            return
        self._metrics.tail_reads.inc()
        found = await self._store.read_events_many(heads, self._read_limit, self.catchup_read_bytes)
        for run_id, events in found.items():
            tail = self._tails.get(run_id)
            if tail is None:
                continue  # its last viewer left during the read
            tail.publish(events)
            if events.more and not tail.finished:
                self._mark_dirty(run_id)  # more rows than one read takes

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._poll_s
        failures = 0
        while True:
            delay = next_sweep - loop.time()
            if not self._dirty and not self._sweep_due and delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            self._wake.clear()
            try:
                if self._sweep_due or loop.time() >= next_sweep:
                    self._sweep_due = False
                    next_sweep = loop.time() + self._poll_s
                    await self.sweep()
                else:
                    await self._read_dirty()
                failures = 0
            except Exception as exc:
                # The reader must outlive any failure (database down, a bad row): log,
                # wait a poll interval, and let the next sweep retry every tail. The
                # traceback once per streak, not once per poll.
                failures += 1
                log.warning(
                    "tail_read_failed",
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    failures=failures,
                    exc_info=exc if failures == 1 else None,
                )
                await asyncio.sleep(self._poll_s)
                self._sweep_due = True

    # --- wake-ups -------------------------------------------------------------------

    def _mark_dirty(self, run_id: RunId) -> None:
        self._dirty.add(run_id)
        self._wake.set()

    def _on_notify(self, payload: str) -> None:
        self._metrics.notifications.inc()
        parsed = parse_notify(payload)
        if parsed is None:
            log.warning("malformed_notification", payload=payload[:200])
            return
        run_id, seq = parsed
        tail = self._tails.get(run_id)
        if tail is not None and not tail.finished and seq > tail.head:
            self._mark_dirty(run_id)

    def _on_cancel(self, payload: str) -> None:
        parsed = parse_cancel(payload)
        if parsed is None:
            log.warning("malformed_cancel_notification", payload=payload[:200])
            return
        if self._cancel_hook is not None:
            self._cancel_hook(*parsed)

    def _on_listen(self) -> None:
        self._sweep_due = True
        self._wake.set()
