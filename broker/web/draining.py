"""`Drain`: the process's shutdown signal, seen the moment it arrives.

On SIGTERM or SIGINT uvicorn stops listening, then waits for the open
connections to end (up to its graceful-shutdown timeout) and only then runs
the app's lifespan shutdown. A viewer's stream never ends on its own, so
without this the timeout would end the streams (cancelled, with tracebacks)
and the runs would be handed over late.

`Drain.install` chains onto the signal handlers the server installed (it is
called from the lifespan's start-up, when they are in place); the signal then
sets the drain at once, and the app reacts:

- `POST .../runs` answers 503 with `Retry-After` (`broker.write.routes`);
- every open stream ends cleanly (`subscribe.response`), so the server goes
  on to the lifespan's shutdown within milliseconds: buffers flushed, leases
  released for another replica's sweeper. A stream registers a callback
  (`on_begin`) rather than a task waiting on the drain: an idle viewer then
  costs a set entry here, not a task.

`begin` sets it by hand (the lifespan's shutdown does, for a server stopped
without a signal). Off the main thread, where signals cannot be caught,
`install` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Drain"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Drain:
    """Set once the process starts shutting down; never cleared."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._callbacks: set[Callable[[], object]] = set()
        self._installed: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}

    @property
    def draining(self) -> bool:
        return self._event.is_set()

    def begin(self) -> None:
        """Start draining now (idempotent); calls every `on_begin` callback once."""
        if self._event.is_set():
            return
        self._event.set()
        callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()

    def on_begin(self, callback: Callable[[], object]) -> None:
        """Call `callback()` when draining begins (never, if it already has: check
        `draining` first). `forget` it when it is no longer wanted."""
        if not self._event.is_set():
            self._callbacks.add(callback)

    def forget(self, callback: Callable[[], object]) -> None:
        """Undo `on_begin(callback)`; a callback not registered is ignored."""
        self._callbacks.discard(callback)

    async def wait(self) -> None:
        """Return once draining has begun."""
        await self._event.wait()

    def install(self) -> None:
        """Set the drain on SIGINT/SIGTERM, then call the handler already installed."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # no server caught this signal: leave its default alone

            def handler(
                signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
            ) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(self.begin)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._installed[sig] = (handler, previous)

    def uninstall(self) -> None:
        """Put the previous handlers back (where nobody replaced ours meanwhile)."""
        for sig, (handler, previous) in self._installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
        self._installed.clear()
