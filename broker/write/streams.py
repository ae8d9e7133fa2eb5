"""The stream manager: per-run write buffers and the process's one swap-and-flush loop.

Producers `push` typed events into a `RunStream`; the broker assigns the seqs
(`run_started` is 1, so a new run's first agent event is 2). One loop task
writes every run's pending events in one fenced transaction
(`FlushPort.flush_runs`), timed by `broker.write.batching.next_flush_at`. Why it is safe:

- **Swap, then await.** A flush takes the pending map and installs a fresh one
  *before* its first `await`: an event pushed meanwhile lands in the next batch.
- **A failed flush puts its batch back in front** of what arrived since (seqs
  are assigned at push, so order holds) and retries with backoff; the primary
  key makes a batch whose commit was lost harmless to send again.
- **Fencing is in the flush itself.** Runs the flush's UPDATE does not return
  belong to another writer (or were ended by someone else): their events are
  dropped and their streams halted. Idle runs' leases are renewed by the same
  flushes (a run joins one once half its renewal period has passed; an idle
  loop flushes when a renewal falls due): no separate heartbeat to race.
- **Memory is bounded**: producers stop reading their agents while the events
  not yet stored reach `backlog_max` (backpressure: the agents keep them), and
  past `run_buffer_max` unstored events a run ends with a terminal `error`
  (`buffer_overflow`) instead of growing.
- **A flush is bounded** by `flush_max_events` and `flush_max_bytes` (the
  events' JSON): a backlog goes out in several flushes back to back, so no
  single statement (nor its sealing) holds the loop or the database for long.
  A flush carries at least one event, however large.
- **Completion is atomic**: the flush that stores a terminal event also ends
  the run, releases its lease and, for `complete`, inserts the final messages.
- **Cancel requests arrive two ways**: the cancel wake-up (`request_cancel`,
  from the read side's LISTEN connection) and, as the fallback, the flag each
  flush's fencing UPDATE returns.

Shutdown (`close`) stops the loop, flushes what is left (a few tries) and
releases the leases of runs still streaming, the agent's event id
(column `runs.agent_cursor`) exact for a re-attach.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog

from broker.errors import DatabaseUnavailable
from broker.store.ports import FlushPort
from broker.store.records import PendingEvent, RunFlush
from broker.web.metrics import Metrics
from broker.write.batching import Backoff, Pending, next_flush_at, take_counts
from broker.write.run_stream import Outcome, RunStream, ending_of
from models.events import ErrorData, ErrorEvent, StreamEvent, is_terminal
from models.ids import RunId, ThreadId

__all__ = ["StoredHook", "StreamManager"]

StoredHook = Callable[[RunId, Sequence[PendingEvent]], None]
"""Told of a run's events once committed, oldest first: local tails take them unread."""

log = structlog.get_logger(__name__)


class StreamManager:
    """Every run this process writes: buffers, seqs and the flush loop (one per process)."""

    def __init__(
        self,
        store: FlushPort,
        *,
        writer_id: str,
        lease_s: float,
        flush_interval_s: float,
        run_buffer_max: int,
        metrics: Metrics,
        flush_max_events: int = 2_000,
        flush_max_bytes: int = 4 * 1024 * 1024,
        backlog_max: int | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.writer_id = writer_id
        self._lease_s = lease_s
        self._renew_every = lease_s / 3
        self._interval = flush_interval_s
        self._run_buffer_max = run_buffer_max
        if flush_max_events < 1 or flush_max_bytes < 1:
            raise ValueError("flush bounds must be positive")
        self._max_events = flush_max_events
        self._max_bytes = flush_max_bytes
        self._backlog_max = backlog_max or 2 * flush_max_events
        self._backlog = False
        self._metrics = metrics
        self._backoff = backoff or Backoff(base=0.05, cap=2.0)
        self._clock = clock
        self._streams: dict[RunId, RunStream] = {}
        self._pending: dict[RunId, Pending] = {}
        self._unflushed_total = 0
        self._last_started: float | None = None
        self._failures = 0
        self._retry_at: float | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_stored: StoredHook | None = None  # the app wires it to this process's tails

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flush loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="stream-manager-flush-loop")

    async def close(self, *, grace_s: float = 10.0, flush_attempts: int = 3) -> None:
        """Stop the loop, flush what is pending, release the leases of runs still open."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace_s)
            except TimeoutError:
                log.error("flush_loop_stuck_at_shutdown", grace_s=grace_s)
        failed = 0
        while self._pending and failed < flush_attempts:
            if await self._flush_once():
                continue  # a bounded flush may leave a backlog: keep going
            failed += 1
            if failed < flush_attempts:
                await asyncio.sleep(self._backoff.delay(self._failures))
        await self._release_open_runs()

    def open(
        self,
        run_id: RunId,
        thread_id: ThreadId,
        *,
        last_seq: int = 1,
        request_id: str | None = None,
    ) -> RunStream:
        """Start writing a run whose stored head is `last_seq` (its lease already ours)."""
        if self._closing:
            raise RuntimeError("the stream manager is closed")
        if run_id in self._streams:
            raise RuntimeError(f"run {run_id} is already open")
        stream = RunStream(self, run_id, thread_id, last_seq, self._clock(), request_id)
        self._streams[run_id] = stream
        self._wake.set()  # its lease renewal joins the loop's schedule
        return stream

    def get(self, run_id: RunId) -> RunStream | None:
        """The run's stream while this process writes it."""
        return self._streams.get(run_id)

    def request_cancel(self, run_id: RunId, by: str) -> None:
        """A member asked to cancel `run_id`: tell its stream, if this process writes it."""
        stream = self._streams.get(run_id)
        if stream is not None:
            stream.request_cancel(by)

    # --- the write path -------------------------------------------------------------------

    def push(self, stream: RunStream, event: StreamEvent, agent_event_id: str | None) -> int | None:
        """`RunStream.push`: buffer an event, assigning its seq; None if the stream is done."""
        if stream.terminal_seq is not None or stream.outcome is not None:
            return None
        overflow = stream.unflushed >= self._run_buffer_max
        if overflow:
            # One event over the cap, and a terminal one: memory stays bounded and
            # the run ends visibly rather than silently losing its tail.
            event = ErrorEvent(
                data=ErrorData(
                    error=f"more than {self._run_buffer_max} events could not be stored in time",
                    error_type="buffer_overflow",
                )
            )
            agent_event_id = None
        seq = stream.next_seq
        stream.next_seq += 1
        was_idle = not self._pending
        pending = self._pending.setdefault(stream.run_id, Pending())
        pending.events.append(
            PendingEvent(stream.run_id, seq, event, datetime.now(UTC), agent_event_id)
        )
        stream.unflushed += 1
        self._unflushed_total += 1  # the gauge is set once per flush, not per event
        if is_terminal(event):
            stream.terminal_seq = seq
        if overflow:
            stream.log.error("run_buffer_overflow", limit=self._run_buffer_max)
            stream.halt("buffer_overflow")
        if was_idle:
            self._wake.set()  # the only push that can move the next flush earlier
        return None if overflow else seq

    async def _loop(self) -> None:
        while not self._closing:
            now = self._clock()
            at = next_flush_at(
                now=now,
                pending=bool(self._pending),
                backlog=self._backlog,
                last_started=self._last_started,
                interval=self._interval,
                renew_due=self._renew_due(),
                retry_at=self._retry_at,
            )
            if at is not None and at <= now:
                await self._flush_once()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # no task per wait, unlike wait_for
                async with asyncio.timeout(None if at is None else at - now):
                    await self._wake.wait()

    def _renew_due(self) -> float | None:
        idle = [s.renewed_at for s in self._streams.values() if s.run_id not in self._pending]
        return min(idle) + self._renew_every if idle else None

    async def _flush_once(self) -> bool:
        """One flush of everything pending (plus due renewals); False if it failed."""
        started = self._clock()
        batch = self._take()
        runs = [self._run_flush(run_id, pending) for run_id, pending in batch.items()]
        runs += [
            RunFlush(stream.run_id, stream.thread_id, 0)
            for stream in self._streams.values()
            if stream.run_id not in batch and started - stream.renewed_at >= self._renew_every / 2
        ]
        events = [item for pending in batch.values() for item in pending.events]
        self._last_started = started
        began = time.perf_counter()
        try:
            accepted = await self._store.flush_runs(self.writer_id, self._lease_s, runs, events)
        except asyncio.CancelledError:
            self._restore(batch)
            raise
        except Exception as exc:
            self._restore(batch)
            self._schedule_retry(exc, len(events))
            return False
        self._failures = 0
        self._retry_at = None
        self._metrics.flush_duration.observe(time.perf_counter() - began)
        self._metrics.flushes.inc()
        self._settle(runs, batch, accepted, started)
        self._metrics.buffered_events.set(self._unflushed_total)  # what is still unstored
        if events:
            self._metrics.batch_size.observe(len(events))
        self._signal_progress()
        return True

    def _take(self) -> dict[RunId, Pending]:
        """Swap out the next flush's events: all pending, or as many as the bounds allow
        (`take_counts`); a run cut by a bound keeps its newer events pending, behind the
        runs not reached, so a busy run does not starve the others."""
        counts = take_counts(
            {run_id: p.events for run_id, p in self._pending.items()},
            max_events=self._max_events,
            max_bytes=self._max_bytes,
        )
        taken: dict[RunId, Pending] = {}
        cut: dict[RunId, Pending] = {}
        for run_id, n in counts.items():
            pending = self._pending.pop(run_id)
            if n:
                taken[run_id] = pending if n == len(pending.events) else Pending(pending.events[:n])
            if n < len(pending.events):
                cut[run_id] = Pending(pending.events[n:])
        self._pending.update(cut)
        self._backlog = bool(self._pending)
        return taken

    def _schedule_retry(self, exc: Exception, events: int) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        self._retry_at = self._clock() + delay
        self._metrics.flush_retries.inc()
        log.warning(
            "flush_failed",
            error=str(exc)[:500],
            error_class=type(exc).__name__,
            events=events,
            failures=self._failures,
            retry_in_s=round(delay, 3),
            exc_info=not isinstance(exc, DatabaseUnavailable),
        )

    def _settle(
        self,
        runs: list[RunFlush],
        batch: dict[RunId, Pending],
        accepted: dict[RunId, str | None],
        at: float,
    ) -> None:
        """After a commit: account what was stored, finish ended runs, stop fenced ones."""
        for run in runs:
            stream = self._streams.get(run.run_id)
            if stream is None:
                continue
            if run.run_id not in accepted:
                self._lose(stream, batch.get(run.run_id))
                continue
            stream.renewed_at = at
            pending = batch.get(run.run_id)
            if pending is not None:
                self._metrics.events_flushed.inc(len(pending.events))
                self._account_stored(stream, len(pending.events))
                stream.stored_seq = pending.events[-1].seq
                self._tell_stored(run.run_id, pending.events)
            if run.ending is not None:
                self._close_stream(stream, "stored")
            elif (cancel_by := accepted[run.run_id]) is not None:
                stream.request_cancel(cancel_by)

    def _tell_stored(self, run_id: RunId, events: list[PendingEvent]) -> None:
        if self.on_stored is not None:
            try:
                self.on_stored(run_id, events)
            except Exception:  # a wake-up only: the table and NOTIFY still tell the readers
                log.exception("on_stored_failed", run_id=str(run_id))

    def _run_flush(self, run_id: RunId, pending: Pending) -> RunFlush:
        stream = self._streams[run_id]
        last = pending.events[-1]
        return RunFlush(
            run_id,
            stream.thread_id,
            last.seq,
            agent_event_id=pending.agent_event_id,
            ending=ending_of(last.event, stream.partial) if last.terminal else None,
        )

    def _restore(self, batch: dict[RunId, Pending]) -> None:
        """Put a failed batch back in front of the events pushed since it was taken."""
        for run_id, newer in self._pending.items():
            failed = batch.get(run_id)
            if failed is not None:
                failed.events.extend(newer.events)
        self._pending = {**batch, **{k: v for k, v in self._pending.items() if k not in batch}}

    def _account_stored(self, stream: RunStream, count: int) -> None:
        stream.unflushed -= count
        self._unflushed_total -= count

    def _lose(self, stream: RunStream, pending: Pending | None) -> None:
        """The fence said no: drop the run's events (this batch's and newer) and stop it."""
        newer = self._pending.pop(stream.run_id, None)
        dropped = (len(pending.events) if pending else 0) + (len(newer.events) if newer else 0)
        self._account_stored(stream, stream.unflushed)
        stream.log.warning("lease_lost", dropped_events=dropped)
        self._close_stream(stream, "lease_lost")

    def _close_stream(self, stream: RunStream, outcome: Outcome) -> None:
        self._streams.pop(stream.run_id, None)
        stream.finish(outcome)
        self._signal_progress()

    @property
    def backlogged(self) -> bool:
        """Whether the events not yet stored, all runs together, reach `backlog_max`
        (default: two flushes' worth): producers then wait (`until_room`)."""
        return self._unflushed_total >= self._backlog_max

    async def until_room(self) -> None:
        """Return once the backlog is under `backlog_max` again, or the manager closes."""
        while self.backlogged and not self._closing:
            await self.next_progress()

    async def next_progress(self) -> None:
        """Return after the next flush or stream closure."""
        await self._progress.wait()

    def _signal_progress(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    async def _release_open_runs(self) -> None:
        streams = list(self._streams.values())
        if not streams:
            return
        try:
            released = await self._store.release_runs(self.writer_id, [s.run_id for s in streams])
        except Exception as exc:
            # The leases expire on their own; the next owner takes over a little later.
            log.error("lease_release_failed", runs=len(streams), error=str(exc)[:500])
            released = set()
        for stream in streams:
            lost = stream.unflushed
            if lost:
                stream.log.error("events_not_stored_at_shutdown", events=lost)
                self._account_stored(stream, lost)
            stream.log.info(
                "run_handed_over", released=stream.run_id in released, stored_seq=stream.stored_seq
            )
            self._close_stream(stream, "abandoned" if lost else "released")
        self._pending.clear()
