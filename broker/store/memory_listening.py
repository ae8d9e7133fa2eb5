"""A LISTEN subscription of the in-memory store (`broker.store.memory`), for tests only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from broker.errors import DatabaseUnavailable

__all__ = ["MemoryListening"]


class _Owner(Protocol):
    """What a subscription asks of its in-memory store."""

    async def check_available(self) -> None: ...

    def forget(self, listening: MemoryListening) -> None: ...


class MemoryListening:
    """A LISTEN subscription of the in-memory store."""

    def __init__(
        self,
        store: _Owner,
        on_payload: Callable[[str], None],
        on_lost: Callable[[], None],
        on_cancel: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self.on_payload = on_payload
        self.on_lost = on_lost
        self.on_cancel = on_cancel
        self._closed = False

    @property
    def backend_pid(self) -> int | None:
        return None

    def is_closed(self) -> bool:
        return self._closed

    async def ping(self) -> None:
        if self._closed:
            raise DatabaseUnavailable("LISTEN connection closed")
        await self._store.check_available()

    async def close(self) -> None:
        self._closed = True
        self._store.forget(self)
