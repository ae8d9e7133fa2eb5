"""The PostgreSQL adapter's base: an engine, a keyring, and transactions that translate.

Driver errors enter here and leave as `broker.errors` (`Conflict`,
`DatabaseUnavailable`, `Unstorable`; never quoting the driver's text), so
nothing above the store sees SQLAlchemy or asyncpg.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
import structlog
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.errors import Conflict, DatabaseUnavailable, Unstorable
from broker.store.crypto import Keyring
from broker.store.records import PendingEvent, RawEvent
from broker.store.sealing import open_event, open_plaintext, seal_events
from models.events import StoredEvent

__all__ = ["CONNECTION_LOST", "Connected", "DriverStatement", "translated"]

_log = structlog.get_logger(__name__)


class Connected:
    """What every part of the PostgreSQL adapter shares: the engine and the keyring."""

    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self.engine = engine
        self.keyring = keyring

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; driver errors come out as `broker.errors`."""
        with translated():
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection without BEGIN/COMMIT, for single statements (each one is its own
        transaction anyway): two round trips fewer on the hot paths. Errors as `transaction`."""
        with translated():
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """A pooled connection's own asyncpg connection (autocommit), for the flush.

        SQLAlchemy's per-statement work (its cursor adapter, the per-element type
        processing of array parameters) cost as much as the statement itself on the
        flush's hot path; `DriverStatement` runs a pre-compiled statement through
        asyncpg's cached prepared statements instead. A connection that failed, or
        whose statement was cancelled mid-flight, is invalidated (never reused);
        errors come out as `broker.errors`.
        """
        with translated():
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                try:
                    yield raw.driver_connection
                except BaseException as exc:
                    lost = isinstance(exc, CONNECTION_LOST)
                    if lost or not isinstance(exc, Exception):
                        await conn.invalidate()
                    if lost:
                        # As SQLAlchemy does on a disconnect: the pooled connections died
                        # with this one; the retry must not meet them one by one.
                        await self.engine.dispose()
                        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
                    raise

    def seal_events(self, events: Sequence[PendingEvent]) -> dict[str, list[Any]]:
        """The parallel arrays of an `unnest` insert, payloads encrypted."""
        return seal_events(self.keyring, events)

    def open_event(self, run_id: uuid.UUID, seq: int, key_id: str, payload: bytes) -> StoredEvent:
        """Decrypt and validate one stored row."""
        return open_event(self.keyring, run_id, seq, key_id, payload)

    def open_raw(self, run_id: uuid.UUID, seq: int, key_id: str, payload: bytes) -> RawEvent:
        """Decrypt one stored row, unparsed."""
        return RawEvent(seq, open_plaintext(self.keyring, run_id, seq, key_id, payload))


CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
"""asyncpg's errors that leave its connection unusable.

SQLSTATE classes 08 (connection exception) and 57 (operator intervention:
`pg_terminate_backend`, a shutdown), a closed socket, and the driver's own
protocol errors. The last come from a server that said goodbye while the
connection sat idle in the pool: its FATAL `ErrorResponse` was read before the
socket's end, the protocol waits for a `ReadyForQuery` that never comes, and
the next statement fails with `InternalClientError` ("cannot switch to state
11; another operation (2) is in progress"). On SQLAlchemy's own path that
one is already a disconnect: the asyncpg connection reports itself closed
after it, which the dialect's disconnect test checks.
"""

_UNAVAILABLE = (*CONNECTION_LOST, asyncpg.exceptions.InsufficientResourcesError)
"""The driver's errors that say the database cannot serve now, not that a statement is
wrong: a lost connection, a server starting up or shutting down (57P03, "the database
system is starting up"), too many connections (class 53)."""


class DriverStatement:
    """A SQLAlchemy statement compiled once for asyncpg: its SQL and its parameters' order."""

    __slots__ = ("_defaults", "_names", "sql")

    def __init__(self, statement: sa.TextClause, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._names = list(compiled.positiontup or ())
        self._defaults = dict(compiled.params)

    def args(self, params: dict[str, Any]) -> list[Any]:
        """The positional arguments for `params` (statement-bound values filled in)."""
        return [params[name] if name in params else self._defaults[name] for name in self._names]


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Driver errors as `broker.errors`, never quoting the driver's text to a client.

    `IntegrityError` → `Conflict`; a database that cannot serve now (SQLAlchemy's
    disconnect, or a driver error of `_UNAVAILABLE` under SQLAlchemy's wrapper, as
    when connecting to a server still starting up) → `DatabaseUnavailable`; a value
    PostgreSQL refuses as data → `Unstorable`. Anything else is a bug: re-raised.
    """
    try:
        yield
    except IntegrityError as exc:
        # Never the driver's text: it names constraints and quotes values.
        _log.info("write_conflict", error=str(exc.orig)[:300])
        raise Conflict("the request conflicts with what is stored") from exc
    except (OperationalError, InterfaceError, OSError) as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    except DBAPIError as exc:
        cause = getattr(exc.orig, "__cause__", None)
        if exc.connection_invalidated or isinstance(cause, _UNAVAILABLE):
            raise DatabaseUnavailable(str(exc)) from exc
        if isinstance(exc, DataError) or isinstance(cause, asyncpg.exceptions.DataError):
            # Never the driver's text: it may quote the value.
            _log.info("unstorable_value", error=type(cause or exc.orig).__name__)
            raise Unstorable("a value cannot be stored (a NUL character in text?)") from exc
        raise
