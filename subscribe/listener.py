"""The process's one LISTEN connection: wake-ups for the tails and cancels, kept alive.

NOTIFY is a wake-up, the table is the truth (STYLE 4): a notification only
tells the hub which run to read now instead of at the next poll, so losing
one costs latency, never data. The connection is reopened with capped
exponential backoff whenever it drops; after every (re)connect the hub is
told to sweep all its tails once, because notifications sent while nobody
was listening are gone.

A dropped connection is noticed at once when the socket closes (asyncpg's
termination callback) and, for a connection that dies silently (a network
partition), by a ping after every `health_s` of quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from broker.errors import DatabaseUnavailable
from broker.store.ports import Listening, TailPort

__all__ = ["Listener"]

log = structlog.get_logger(__name__)


class Listener:
    """Keeps one LISTEN connection open and reports payloads and (re)connects."""

    def __init__(
        self,
        store: TailPort,
        on_payload: Callable[[str], None],
        on_connect: Callable[[], None],
        *,
        on_cancel: Callable[[str], None] | None = None,
        retry_s: tuple[float, float] = (0.1, 5.0),
        health_s: float = 10.0,
    ) -> None:
        self._store = store
        self._on_payload = on_payload
        self._on_connect = on_connect
        self._on_cancel = on_cancel
        self._retry_first, self._retry_max = retry_s
        self._health_s = health_s
        self._listening: Listening | None = None
        self.connects = 0
        """How many times a LISTEN connection was established (1 + reconnects)."""

    @property
    def connected(self) -> bool:
        return self._listening is not None and not self._listening.is_closed()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the current connection, None while disconnected."""
        return self._listening.backend_pid if self.connected and self._listening else None

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        delay = self._retry_first
        while True:
            lost = asyncio.Event()
            try:
                listening = await self._store.listen(
                    self._on_payload, lost.set, on_cancel=self._on_cancel
                )
            except DatabaseUnavailable as exc:
                log.warning("listen_connect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            delay = self._retry_first
            self._listening = listening
            self.connects += 1
            log.info("listening", backend_pid=listening.backend_pid, connects=self.connects)
            try:
                self._on_connect()
                await self._watch(listening, lost)
            finally:
                self._listening = None
                await listening.close()
            log.warning("listen_connection_lost", retry_in_s=delay)
            await asyncio.sleep(delay)

    async def _watch(self, listening: Listening, lost: asyncio.Event) -> None:
        """Return when the connection is lost: closed by the server, or silent to a ping."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._health_s):
                    await lost.wait()
                return
            try:
                await listening.ping()
            except DatabaseUnavailable as exc:
                log.warning("listen_ping_failed", error=str(exc))
                return
