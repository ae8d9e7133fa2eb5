"""The LISTEN side of the NOTIFY wake-up: one dedicated asyncpg connection.

Outside the pool because it is held for the life of the process, and a pooled
connection handed back with a listener attached would keep calling it. The
channel and payload format belong to `broker.store.notify`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import DatabaseUnavailable
from broker.store.connection import CONNECTION_LOST
from broker.store.notify import CANCEL_CHANNEL, NOTIFY_CHANNEL

__all__ = ["Listening", "listen"]

# Errors of a direct asyncpg connection, translated to `DatabaseUnavailable`: the
# server's, and every way of losing the connection (`CONNECTION_LOST`, which holds the
# driver's protocol error of a connection that read its server's goodbye).
_LISTEN_ERRORS = (asyncpg.PostgresError, *CONNECTION_LOST)
_PING_TIMEOUT_S = 5.0


class Listening:
    """A dedicated asyncpg connection LISTENing on the wake-up channels, outside the pool."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (what `pg_terminate_backend` takes)."""
        pid: int = self._connection.get_server_pid()
        return pid

    def is_closed(self) -> bool:
        closed: bool = self._connection.is_closed()
        return closed

    async def ping(self) -> None:
        """One round trip, or `DatabaseUnavailable`: proves a quiet connection is alive."""
        try:
            await self._connection.execute("SELECT 1", timeout=_PING_TIMEOUT_S)
        except _LISTEN_ERRORS as exc:
            raise DatabaseUnavailable(f"LISTEN connection: {exc}") from exc

    async def close(self) -> None:
        """Close the connection (at once if the server already went away)."""
        try:
            await self._connection.close(timeout=2)
        except _LISTEN_ERRORS:
            self._connection.terminate()


async def listen(
    engine: AsyncEngine,
    on_payload: Callable[[str], None],
    on_lost: Callable[[], None],
    *,
    on_cancel: Callable[[str], None] | None = None,
) -> Listening:
    """LISTEN on `NOTIFY_CHANNEL` (and `CANCEL_CHANNEL` with `on_cancel`); `on_lost` on drop."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    try:
        connection = await asyncpg.connect(*args, **kwargs)
    except _LISTEN_ERRORS as exc:
        raise DatabaseUnavailable(f"LISTEN connection: {exc}") from exc
    listening = Listening(connection)
    connection.add_termination_listener(lambda _connection: on_lost())
    handlers = {NOTIFY_CHANNEL: on_payload}
    if on_cancel is not None:
        handlers[CANCEL_CHANNEL] = on_cancel
    for channel, handler in handlers.items():
        try:
            await connection.add_listener(channel, _deliver(handler))
        except _LISTEN_ERRORS as exc:
            await listening.close()
            raise DatabaseUnavailable(f"LISTEN {channel}: {exc}") from exc
    return listening


def _deliver(handler: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    """asyncpg's listener signature, reduced to the payload."""
    return lambda _connection, _pid, _channel, payload: handler(payload)
