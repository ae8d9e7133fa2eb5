"""`RunRegistry`: the in-flight runs, the only state the service keeps between requests.

Each run is driven by its own supervisor task, independent of any HTTP
request, which writes the run's events into its `RunBuffer`; responses only
read that buffer. Hence a client may disconnect and another (a restarted
broker) re-attach with `Last-Event-ID` without the run noticing.

Lifecycle of a run:

- `start` registers it and spawns its supervisor; a second `start` with the
  same id while it is registered is refused (`RunInFlight`).
- Readers `attach` and `detach`. When the last one leaves before the terminal
  event was delivered, a grace timer starts (`AGENT_DETACH_GRACE_S`); a reader
  attaching stops it; when it fires the run is cancelled (`by: "detached"`)
  and forgotten.
- Once a reader has been sent the terminal event the run is forgotten: the
  broker has what it needs, and later calls get 404.
- `cancel` sets the token. The supervisor races the run against the token, so
  the `cancelled` event is appended the moment the token is set, before the
  run's task is torn down, and nothing the run produces afterwards is kept.
- `aclose` (app shutdown) cancels every run (`by: "shutdown"`) and waits for
  the supervisors, so no task outlives the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agents.buffer import RunBuffer
from agents.cancel import CancelToken
from agents.errors import RunInFlight, RunNotFound
from models.events import (
    Cancelled,
    CancelledData,
    ErrorData,
    ErrorEvent,
    StreamEvent,
)

__all__ = ["EventSource", "Run", "RunRegistry"]

EventSource = Callable[[CancelToken], AsyncGenerator[StreamEvent, None]]
"""Produces a run's events, ending with one terminal event; given the run's token."""

_logger = structlog.get_logger(__name__)


@dataclass(eq=False)
class Run:
    """One in-flight run: its token, its buffer, its supervisor and its readers."""

    run_id: str
    request_id: str
    buffer: RunBuffer
    token: CancelToken = field(default_factory=CancelToken)
    readers: int = 0
    task: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None
    log: Any = None
    # Where a re-attaching broker's fresh run capability goes (the run's callback).
    renew_capability: Callable[[str], None] | None = None


class RunRegistry:
    """In-flight runs by id, with their detach grace and their shutdown."""

    def __init__(self, *, grace_s: float, buffer_max: int) -> None:
        self._grace_s = grace_s
        self._buffer_max = buffer_max
        self._runs: dict[str, Run] = {}
        # Supervisors of forgotten runs may still be winding down; shutdown waits for them too.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def start(self, run_id: str, request_id: str, source: EventSource) -> Run:
        """Register a run and start its supervisor."""
        if self._closing:
            raise RuntimeError("the run registry is shutting down")
        if run_id in self._runs:
            raise RunInFlight(run_id)
        run = Run(run_id=run_id, request_id=request_id, buffer=RunBuffer(self._buffer_max))
        run.log = _logger.bind(run_id=run_id, request_id=request_id)
        self._runs[run_id] = run
        task = asyncio.create_task(self._supervise(run, source), name=f"agent-run-{run_id}")
        run.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    def get(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    def cancel(self, run_id: str, by: str) -> Run:
        """Set the run's token (idempotent; the first reason stays)."""
        run = self.get(run_id)
        if run.token.cancel(by):
            run.log.info("run_cancel_requested", by=by)
        return run

    def attach(self, run: Run) -> None:
        run.readers += 1
        if run.expiry is not None:
            run.expiry.cancel()
            run.expiry = None

    def detach(self, run: Run, *, delivered_terminal: bool) -> None:
        run.readers -= 1
        if delivered_terminal:
            self._forget(run)
        elif run.readers == 0 and self._runs.get(run.run_id) is run and run.expiry is None:
            run.log.info("run_detached", grace_s=self._grace_s, head=run.buffer.head)
            loop = asyncio.get_running_loop()
            run.expiry = loop.call_later(self._grace_s, self._expire, run)

    async def aclose(self, wait_s: float = 5.0) -> None:
        """Cancel every run and wait for the supervisors (app shutdown)."""
        self._closing = True
        for run in list(self._runs.values()):
            run.token.cancel("shutdown")
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=wait_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for run in list(self._runs.values()):
            self._forget(run)

    def _expire(self, run: Run) -> None:
        run.expiry = None
        if run.readers == 0 and self._runs.get(run.run_id) is run:
            run.log.info("run_detach_grace_expired", head=run.buffer.head)
            run.token.cancel("detached")
            self._forget(run)

    def _forget(self, run: Run) -> None:
        if run.expiry is not None:
            run.expiry.cancel()
            run.expiry = None
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]
            run.log.info("run_forgotten", head=run.buffer.head)

    async def _supervise(self, run: Run, source: EventSource) -> None:
        events = source(run.token)
        pump = asyncio.create_task(self._pump(run, events), name=f"agent-pump-{run.run_id}")
        cancelled = asyncio.create_task(run.token.wait(), name=f"agent-cancel-{run.run_id}")
        try:
            await asyncio.wait({pump, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if run.token.cancelled:
                # Terminal first: the reader sees `cancelled` now, however long the run's
                # teardown (an HTTP request being aborted, a graph unwinding) takes.
                run.buffer.close(Cancelled(data=CancelledData(by=run.token.reason)))
        finally:
            pump.cancel()
            cancelled.cancel()
            results = await asyncio.gather(pump, cancelled, return_exceptions=True)
            failure = results[0]
            if isinstance(failure, BaseException) and not isinstance(
                failure, asyncio.CancelledError
            ):
                run.log.error("run_source_failed", exc_info=failure)
            if not run.buffer.closed:
                # The source must end with a terminal event; if it did not, say so rather
                # than leave the broker waiting for one.
                run.buffer.close(
                    ErrorEvent(
                        data=ErrorData(
                            error="the run ended without a terminal event",
                            error_type="internal_error",
                        )
                    )
                )
            last = run.buffer.last_event
            run.log.info(
                "run_finished",
                events=run.buffer.head,
                terminal=last.event_type if last is not None else None,
            )

    @staticmethod
    async def _pump(run: Run, events: AsyncGenerator[StreamEvent, None]) -> None:
        try:
            async for event in events:
                # Between chunks: nothing the run produces after a cancel is kept.
                if run.token.cancelled or not run.buffer.append(event):
                    return
        finally:
            # Leaving early (cancel, overflow) must close the source now, not at GC.
            await events.aclose()
