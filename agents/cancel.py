"""`CancelToken`: a run's cancellation flag, settable from any thread.

Checked synchronously at every tool boundary and between model chunks
(`raise_if_cancelled`), and awaited by the run's supervisor (`wait`) so a
cancel takes effect at once even while the run is blocked on the network.
The flag is a `threading.Event`; asyncio waiters are woken through their
loop's `call_soon_threadsafe`, which makes `cancel` safe to call from a
worker thread (a sync tool, a signal handler) as well as from the loop.
"""

from __future__ import annotations

import asyncio
import threading

from agents.errors import RunCancelled

__all__ = ["CancelToken"]


class CancelToken:
    """Set once; the first reason given wins."""

    __slots__ = ("_event", "_lock", "_reason", "_waiters")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Who or what cancelled the run (the `by` of the `cancelled` event)."""
        return self._reason

    def cancel(self, by: str) -> bool:
        """Set the token; returns False if it was already set (the first reason stays)."""
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = by
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            # A closed loop has no one left to wake.
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
        return True

    def raise_if_cancelled(self) -> None:
        """Raise `RunCancelled` if the token is set: the check at tool and chunk boundaries."""
        if self._event.is_set():
            raise RunCancelled(self._reason or "unknown")

    async def wait(self) -> str:
        """Return (the reason) once the token is set."""
        event = asyncio.Event()
        with self._lock:
            if not self._event.is_set():
                self._waiters.append((asyncio.get_running_loop(), event))
            else:
                event.set()
        try:
            await event.wait()
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not event]
        return self._reason or "unknown"
