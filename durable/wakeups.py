"""Wake-ups of live readers: one LISTEN connection per process, one event per waiter.

A long-poll or SSE reader that is caught up waits here instead of polling:
an append in this process wakes it at once (`wake`), an append in another
process wakes it through `NOTIFY ds_streams`. NOTIFY is only a wake-up; a
woken reader re-reads the table, and every wait is bounded (`timeout`), so a
notification lost while the LISTEN connection was down costs latency, never
data. Readers of one stream share nothing but the wake-up: each reads the
rows it is owed once, when they are there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from broker.errors import DatabaseUnavailable
from broker.store.connection import CONNECTION_LOST
from durable.store import NOTIFY_CHANNEL, DurableStore

__all__ = ["Wakeups"]

log = structlog.get_logger(__name__)


class Wakeups:
    """Waiters by stream id, woken by local appends and by NOTIFY."""

    def __init__(self, store: DurableStore, *, retry_s: float = 1.0) -> None:
        self._store = store
        self._retry_s = retry_s
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Wakeups:
        self._task = asyncio.create_task(self._listen(), name="ds-listen")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for events in self._waiters.values():
            for event in events:
                event.set()

    def wake(self, stream_id: int) -> None:
        for event in self._waiters.get(stream_id, ()):
            event.set()

    @contextlib.contextmanager
    def registered(self, stream_id: int) -> Iterator[asyncio.Event]:
        """An event set by the next wake-up of `stream_id`: register, then check, then wait."""
        event = asyncio.Event()
        self._waiters.setdefault(stream_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(stream_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[stream_id]

    def _on_payload(self, payload: str) -> None:
        if payload.isdigit():
            self.wake(int(payload))

    def _wake_all(self) -> None:
        for stream_id in list(self._waiters):
            self.wake(stream_id)

    async def _listen(self) -> None:
        while True:
            lost = asyncio.Event()
            connection: Any = None
            try:
                connection = await _listen(self._store, self._on_payload, lost.set)
                self._wake_all()  # anything sent while nobody listened is re-read now
                await lost.wait()
            except DatabaseUnavailable as exc:
                log.warning("ds_listen_failed", error=str(exc))
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
            await asyncio.sleep(self._retry_s)


async def _listen(
    store: DurableStore, on_payload: Callable[[str], None], on_lost: Callable[[], None]
) -> Any:
    """An asyncpg connection LISTENing on `NOTIFY_CHANNEL`; `on_lost` fires if it drops."""
    args, kwargs = store.engine.dialect.create_connect_args(store.engine.url)
    try:
        connection = await asyncpg.connect(*args, **kwargs)
        connection.add_termination_listener(lambda _c: on_lost())
        await connection.add_listener(
            NOTIFY_CHANNEL, lambda _c, _pid, _channel, payload: on_payload(payload)
        )
    except (asyncpg.PostgresError, *CONNECTION_LOST) as exc:
        raise DatabaseUnavailable(f"LISTEN {NOTIFY_CHANNEL}: {exc}") from exc
    return connection
