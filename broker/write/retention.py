"""Retention: delete the raw events of runs finished more than `BROKER_RETENTION_S` ago.

Raw events are the durable buffer of a run in flight and of its replays; once
a run has been finished for the retention period, its final state lives on in
`runs` and `messages` (a late subscriber gets the terminal event rebuilt from
them, design 4.3), so the rows can go. One DELETE per sweep, on a timer: the
work is proportional to what expired, and a missed sweep only delays it.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from broker.store.ports import RetentionPort

__all__ = ["Retention", "sweep_interval"]

log = structlog.get_logger(__name__)


def sweep_interval(retention_s: float) -> float:
    """How often to sweep: a tenth of the retention period, between 1 s and 5 min."""
    return min(max(retention_s / 10, 1.0), 300.0)


class Retention:
    """A periodic task deleting expired raw events; `start` once, `close` at shutdown."""

    def __init__(
        self, store: RetentionPort, *, retention_s: float, every_s: float | None = None
    ) -> None:
        self._store = store
        self._retention_s = retention_s
        self._every_s = sweep_interval(retention_s) if every_s is None else every_s
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0
        self.swept = asyncio.Event()
        """Set once a sweep has completed (for whoever waits on the first one)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """Delete what expired now; the number of rows deleted."""
        deleted = await self._store.delete_expired_events(self._retention_s)
        self.deleted += deleted
        self.swept.set()
        if deleted:
            log.info("retention_swept", deleted=deleted, retention_s=self._retention_s)
        return deleted

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                # The next sweep catches up; a database outage must not end the task.
                log.warning("retention_failed", error=str(exc)[:500])
            await asyncio.sleep(self._every_s)
