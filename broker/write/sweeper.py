"""The takeover sweeper: every replica claims runs whose writer is gone, and resumes them.

A run's writer renews its lease with every flush (`broker.write.streams`); a
writer that crashed stops renewing, and one that shut down gracefully
released its leases at once. Every replica runs one `Sweeper`: at start-up
and then every `interval_s` it claims up to `batch` active runs whose lease
has expired (`LifecyclePort.claim_expired_runs`, a fenced
`UPDATE ... FOR UPDATE SKIP LOCKED`, so two replicas never claim the same
run) and hands each to `Producers.resume`, which re-attaches to the agent
after the run's `agent_cursor`. A run the agent no longer has, or an agent
that stays unreachable, ends with a terminal `error` `producer_lost` (status
`interrupted`): no viewer waits forever and the thread takes new messages.
A `pending` run that never started is claimed the same way.

A claimed run this process cannot resume (it is shutting down) is released
again at once for another replica. A failed claim (database away) is logged
and retried at the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog

from broker.store.ports import LifecyclePort
from broker.write.producer import Producers
from models.ids import RunId

__all__ = ["Sweeper"]

log = structlog.get_logger(__name__)


class Sweeper:
    """One replica's periodic claim of expired runs (one per process)."""

    def __init__(
        self,
        store: LifecyclePort,
        producers: Producers,
        *,
        writer_id: str,
        lease_s: float,
        interval_s: float,
        batch: int = 100,
    ) -> None:
        """`lease_s`: the lease a claim takes (seconds); `interval_s`: seconds between sweeps."""
        if interval_s <= 0 or batch < 1:
            raise ValueError("the sweep needs a positive interval and batch")
        self._store = store
        self._producers = producers
        self._writer_id = writer_id
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep now, then every `interval_s` (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="takeover-sweeper")

    async def close(self) -> None:
        """Stop sweeping (runs already resumed belong to the producers)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                while await self.sweep() == self._batch:
                    pass  # a full batch: more may be waiting
            except Exception as exc:
                log.warning("sweep_failed", error=str(exc)[:500], error_class=type(exc).__name__)
            await asyncio.sleep(self._interval_s)

    async def sweep(self) -> int:
        """One claim and resume; returns how many runs were claimed."""
        if not self._producers.accepting:
            return 0
        claimed = await self._store.claim_expired_runs(self._writer_id, self._lease_s, self._batch)
        refused: list[RunId] = []
        for run in claimed:
            if run.run_id in self._producers:
                continue  # our own run (its renewal was late): the claim renewed our lease
            request_id = f"takeover-{uuid.uuid4().hex[:12]}"
            if self._producers.resume(run, request_id=request_id):
                log.info(
                    "run_claimed",
                    run_id=str(run.run_id),
                    last_seq=run.last_seq,
                    agent_cursor=run.agent_event_id,
                    request_id=request_id,
                )
            else:
                refused.append(run.run_id)
        if refused:
            await self._store.release_runs(self._writer_id, refused)
            log.info("claimed_runs_released", runs=len(refused))
        return len(claimed)
