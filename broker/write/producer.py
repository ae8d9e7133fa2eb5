"""The producer: one task per run, from the agent's SSE stream into the run's buffer.

A producer builds the agent request (the thread's transcript before this
run, the workspace's integrations), consumes the agent's stream with
`broker.web.sse`, validates each frame against the event union and pushes it
with the agent's SSE id into its `RunStream`. Whatever happens, the run ends
with exactly one terminal event (invariant 2):

- the agent sends `complete`, `error` or `cancelled`: that one (later frames are
  not read);
- refused, or 5xx, before the stream began: retried with backoff, then `error`
  `agent_unavailable`;
- 409 (the agent already runs it): re-attach instead; any other non-2xx:
  `error` `agent_rejected`;
- a re-attach answered 404 (the agent no longer has the run), or an agent
  unreachable past the retries while taking a run over: `error`
  `producer_lost`, which ends the run `interrupted`;
- the stream breaks off: `error` `agent_stream_failed`;
- the stream ends without a terminal event: `error` `agent_stream_truncated`;
- a bug in the producer: `error` `producer_failed`.

Malformed frames, unknown types, broker-only types (`run_started`) and
events over `BROKER_MAX_EVENT_BYTES` are logged with the run id (never their
content) and dropped, an oversized one also counted in
`broker_events_oversized`; the stream goes on.

Each agent request carries a freshly minted run capability
(`broker.web.capability`), so the agent's tools can reach this run's
workspace's integrations, and nothing else, while the run streams.

Frames are read `paced` (backpressure while the manager is backlogged). The
producer stops reading as soon as its stream is halted by the manager
(lease lost to another writer, or buffer overflow), racing the agent read
against the halt. After a broken or overflowing stream it asks the agent to
cancel the run (the agent would otherwise keep it going for its grace
period); after a lost lease it only disconnects, since the new owner may be
re-attaching.

A run taken over from another writer (`Producers.resume`, called by the
sweeper) re-attaches to the agent with `Last-Event-ID` = the run's
`agent_cursor`, the agent's id of its last stored event, so the agent replays
exactly what was never stored, with a freshly minted capability like any
agent request. Every re-attach resumes after the newest agent id this
producer has pushed.

On shutdown the task is cancelled: the agent connection closes, the run's
buffered events are flushed and its lease handed over by the stream manager,
and the agent keeps the run for a re-attach.

Cancel (design 5): the run's stream is told by the cancel wake-up or by the
flag a flush returns (`RunStream.cancel_requested`), and the producer races
its agent read against that too. It then, at once, 1. sends the agent's
cancel and 2. aborts its request (nothing the agent sends after the cancel
was asked for is kept), and 3.-5. pushes the terminal `cancelled` (`by`: the
member) with the partial answer: one flush stores the event, the partial
transcript and the run's `cancelled` status in one transaction. A flag
already raised when the producer starts ends the run at once, and the agent
is never called.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from broker.errors import (
    AgentConflict,
    AgentError,
    AgentRejected,
    AgentRunUnknown,
    AgentStreamBroken,
    AgentUnavailable,
    DatabaseUnavailable,
)
from broker.store.ports import ProducerReads
from broker.store.records import RunRecord
from broker.web.capability import mint_capability
from broker.web.metrics import Metrics
from broker.web.sse import ServerSentEvent, aiter_sse
from broker.write.agent_client import AgentClient
from broker.write.agent_frames import interpret_frame, paced
from broker.write.batching import Backoff
from broker.write.run_stream import RunStream, until_stopped
from broker.write.streams import StreamManager
from models.agent_api import AgentIntegration, RunRequest
from models.events import (
    ChatMessage,
    ErrorData,
    ErrorEvent,
    StoredEvent,
    Text,
    is_terminal,
)
from models.ids import RunId
from models.status import PRODUCER_LOST

__all__ = ["Producers", "interpret_frame"]

_log = structlog.get_logger(__name__)

_T = TypeVar("_T")

# How long a cancelled run waits for the agent to acknowledge its cancel (after the end).
_AGENT_CANCEL_TIMEOUT_S = 5.0


def _error(error_type: str, message: str) -> ErrorEvent:
    return ErrorEvent(data=ErrorData(error=message, error_type=error_type))


class Producers:
    """The producer tasks of this process, one per run; closed once at shutdown."""

    def __init__(
        self,
        store: ProducerReads,
        streams: StreamManager,
        agent: AgentClient,
        metrics: Metrics,
        *,
        agent_backoff: Backoff,
        db_backoff: Backoff | None = None,
        capability_secret: str,
        capability_ttl_s: int = 3600,
        max_event_bytes: int = 1_048_576,
    ) -> None:
        self.store = store
        self.streams = streams
        self.agent = agent
        self.metrics = metrics
        self.agent_backoff = agent_backoff
        self.db_backoff = db_backoff or Backoff(base=0.1, cap=2.0)
        self.capability_secret = capability_secret
        self.capability_ttl_s = capability_ttl_s
        self.max_event_bytes = max_event_bytes
        self._tasks: dict[RunId, asyncio.Task[None]] = {}
        self.accepting = True

    def capability(self, run: RunRecord) -> str:
        """A fresh capability for `run`'s tools (`broker.web.capability`)."""
        return mint_capability(
            self.capability_secret, run.run_id, run.workspace_id, self.capability_ttl_s
        )

    def start(self, run: RunRecord, message: str, *, request_id: str) -> bool:
        """Start producing a freshly created run; False once shutdown has begun."""
        return self._launch(run, message, request_id)

    def resume(self, run: RunRecord, *, request_id: str) -> bool:
        """Take over a run claimed from another writer: re-attach after its `agent_cursor`.

        False once shutdown has begun.
        """
        return self._launch(run, None, request_id)

    def _launch(self, run: RunRecord, message: str | None, request_id: str) -> bool:
        if not self.accepting:
            return False
        stream = self.streams.open(
            run.run_id, run.thread_id, last_seq=run.last_seq, request_id=request_id
        )
        producer = _Producer(self, stream, run, message, request_id)
        task = asyncio.create_task(producer.run(), name=f"producer:{run.run_id}")
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.run_id, None))
        self.metrics.active_producers.inc()
        return True

    def __contains__(self, run_id: object) -> bool:
        """Whether this process is producing the run now."""
        return run_id in self._tasks

    @property
    def active(self) -> int:
        """How many runs this process is producing now."""
        return len(self._tasks)

    async def close(self) -> None:
        """Take no new runs and stop every producer (their streams stay open to be flushed)."""
        self.accepting = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Producer:
    """One run's producer."""

    def __init__(
        self,
        owner: Producers,
        stream: RunStream,
        run: RunRecord,
        message: str | None,
        request_id: str,
    ) -> None:
        self._owner = owner
        self._agent = owner.agent
        self._metrics = owner.metrics
        self._stream = stream
        self._run = run
        self._message = message
        self._request_id = request_id
        self._agent_cursor = run.agent_event_id
        """The agent's id of the newest event pushed: where a re-attach resumes."""
        self._log = _log.bind(run_id=str(run.run_id), request_id=request_id)
        # A taken-over run's agent may still be running it: a cancel must reach it.
        self._agent_called = message is None

    async def run(self) -> None:
        stream = self._stream
        try:
            try:
                await self._check_cancel_flag()
                if not stream.cancel_requested.is_set():
                    if self._message is None:
                        self._log.info("run_taken_over", agent_cursor=self._agent_cursor)
                        request = None
                    else:
                        request = await self._agent_request(self._message)
                    if not stream.cancel_requested.is_set():
                        await until_stopped(stream, self._consume(request))
                if stream.cancel_requested.is_set():
                    await self._cancel()
            except Exception:
                self._log.exception("producer_failed")
                stream.push(_error("producer_failed", "the broker failed to produce this run"))
            if stream.halt_reason == "buffer_overflow":
                await self._cancel_agent()
            outcome = await stream.wait_closed()
            self._log.info("producer_finished", outcome=outcome, last_seq=stream.stored_seq)
        except asyncio.CancelledError:
            self._log.info("producer_stopped", stored_seq=stream.stored_seq)
            raise
        finally:
            self._metrics.active_producers.dec()

    async def _check_cancel_flag(self) -> None:
        """A cancel recorded before this producer started (its wake-up came too early)."""
        run, store = self._run, self._owner.store
        stored = await self._retry_db(lambda: store.get_run(run.workspace_id, run.run_id))
        if stored.abort_requested_at is not None:
            self._stream.request_cancel(stored.aborted_by or "")

    async def _cancel(self) -> None:
        """Stop the run for its cancel: the agent told, the request aborted, the end pushed."""
        stream = self._stream
        telling = asyncio.create_task(self._cancel_agent()) if self._agent_called else None
        # The agent read was stopped by the race (or never began): the request is aborted.
        try:
            partial = await self._partial_answer()
            if stream.cancel(stream.cancel_by, partial) is not None:
                self._log.info("run_cancelled", by=stream.cancel_by, partial=len(partial))
        finally:
            if telling is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(telling, _AGENT_CANCEL_TIMEOUT_S)

    async def _partial_answer(self) -> list[ChatMessage]:
        """The answer so far, as one assistant message (none if no text was produced)."""
        stream = self._stream
        earlier: list[str] = []
        if stream.first_seq > 2:
            # Taken over from another writer: its part of the answer is in the table.
            after = 1
            while after < stream.first_seq - 1:
                found = await self._retry_db(functools.partial(self._read_after, after))
                if not found:
                    break
                earlier += [
                    e.event.data.text
                    for e in found
                    if isinstance(e.event, Text) and e.seq < stream.first_seq
                ]
                after = found[-1].seq
        text = "".join(earlier + stream.answer)
        return [ChatMessage(role="assistant", content=text)] if text.strip() else []

    async def _read_after(self, after: int) -> list[StoredEvent]:
        return await self._owner.store.read_events(self._run.run_id, after)

    async def _agent_request(self, message: str) -> RunRequest:
        """The agent's input: the transcript before this run's message, and the integrations."""
        run, store = self._run, self._owner.store
        stored = await self._retry_db(lambda: store.list_messages(run.thread_id))
        found = await self._retry_db(lambda: store.list_integrations(run.workspace_id))
        return RunRequest(
            run_id=str(run.run_id),
            thread_id=str(run.thread_id),
            history=[m.message for m in stored if m.run_id != run.run_id],
            new_user_message=message,
            integrations=[
                AgentIntegration(id=str(i.integration_id), kind=i.kind, name=i.name) for i in found
            ],
            capability=self._owner.capability(run),
        )

    async def _retry_db(self, read: Callable[[], Awaitable[_T]]) -> _T:
        failures = 0
        while True:
            try:
                return await read()
            except DatabaseUnavailable as exc:
                failures += 1
                delay = self._owner.db_backoff.delay(failures)
                self._log.warning("database_unavailable_retrying", error=str(exc)[:200])
                await asyncio.sleep(delay)

    async def _consume(self, request: RunRequest | None) -> None:
        """Feed the agent's events into the stream until it holds a terminal one.

        `request` None: the run is taken over, so only a re-attach is tried.
        """
        delays = self._owner.agent_backoff.delays()
        reattach = request is None
        while True:
            self._agent_called = True
            try:
                body = (
                    self._agent.reattach(
                        self._run.run_id,
                        last_event_id=self._agent_cursor,
                        request_id=self._request_id,
                        capability=self._owner.capability(self._run),
                    )
                    if reattach or request is None
                    else self._agent.stream_run(request, request_id=self._request_id)
                )
                async with body as chunks:
                    async for frame in paced(aiter_sse(chunks), self._owner.streams):
                        if self._take(frame):
                            return
                await self._fail(
                    "agent_stream_truncated", "the agent's stream ended without a terminal event"
                )
                return
            except AgentConflict as exc:
                if reattach:
                    self._end("agent_rejected", str(exc))
                    return
                self._log.info("agent_already_running_reattaching")
                reattach = True
            except AgentRunUnknown as exc:
                self._end(PRODUCER_LOST if reattach else exc.code, str(exc))
                return
            except AgentUnavailable as exc:
                delay = next(delays, None)
                if delay is None:
                    self._end(PRODUCER_LOST if request is None else exc.code, str(exc))
                    return
                self._log.info("agent_unavailable_retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            except AgentRejected as exc:
                self._end(exc.code, str(exc))
                return
            except AgentStreamBroken as exc:
                await self._fail(exc.code, str(exc))
                return

    def _take(self, frame: ServerSentEvent) -> bool:
        """Push one frame's event; True when the producer should stop reading."""
        self._metrics.events_received.inc()
        if self._stream.cancel_requested.is_set():
            return True  # the agent's events after a cancel are not the run's
        event = interpret_frame(frame, max_bytes=self._owner.max_event_bytes)
        if isinstance(event, str):
            self._metrics.events_dropped.inc()
            if event == "oversized":
                self._metrics.events_oversized.inc()
            # Never the frame's content: it may hold user data that must not reach logs.
            self._log.warning(
                "agent_event_dropped", reason=event, agent_id=frame.id, size=len(frame.data)
            )
            return False
        seq = self._stream.push(event, agent_event_id=frame.id)
        if seq is not None and frame.id is not None:
            self._agent_cursor = frame.id
        return seq is None or is_terminal(event)

    def _end(self, error_type: str, message: str) -> None:
        """End the run with a terminal error of the broker's."""
        self._stream.push(_error(error_type, message))
        self._log.warning("run_failed", error_type=error_type, error=message)

    async def _fail(self, error_type: str, message: str) -> None:
        """End the run with an error, and tell the agent to stop working on it."""
        self._end(error_type, message)
        await self._cancel_agent()

    async def _cancel_agent(self) -> None:
        try:
            await self._agent.cancel(self._run.run_id, request_id=self._request_id)
        except AgentError as exc:
            self._log.info("agent_cancel_failed", error=str(exc))
