"""Run one integration query against an external PostgreSQL: `run_query`.

This is not the broker's own database, so it is not the store's SQL: it is
a caller's statement, run with a caller's credentials, behind this one
function. Each query gets a connection of its own, opened and closed here:
tool calls are seconds apart and a pool per integration would be state to
bound, expire and shut down for no measurable gain.

What keeps a query harmless, innermost first:

- `BEGIN READ ONLY`, and `default_transaction_read_only` on the session:
  PostgreSQL refuses any write, including a writable CTE or a function that
  writes, whatever the role may do;
- a `SELECT` before the caller's statement, which sets the statement
  timeout for this transaction and takes its first snapshot, after which
  PostgreSQL refuses `SET TRANSACTION READ WRITE`;
- the statement is prepared (extended protocol), and PostgreSQL refuses to
  prepare more than one command, so `SELECT 1; DELETE ...` never runs;
- at most `max_rows + 1` rows are fetched through a cursor, so a huge
  result costs one batch, and the extra row says whether it was truncated;
- the screen of `broker/integrations/rules.py`, which refuses a statement that does
  not start like a read before connecting.

Credentials never leave this module in a message: a failure to connect is
reported by the exception's class name only, never its text.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from broker.errors import IntegrationUnavailable, QueryFailed, QueryRejected, QueryTimeout
from broker.integrations.rules import QueryResult, json_value, screen_sql

__all__ = ["CLIENT_TIMEOUT_MARGIN_S", "asyncpg_dsn", "run_query"]

CLIENT_TIMEOUT_MARGIN_S = 2.0
"""How long past the server's statement timeout the client waits before giving up itself."""

_REJECTED_SQLSTATES = frozenset(
    {
        "25006",  # read_only_sql_transaction
        "42501",  # insufficient_privilege
        "25001",  # active_sql_transaction (e.g. SET TRANSACTION after the snapshot)
    }
)
_TIMEOUT_SQLSTATES = frozenset({"57014"})  # query_canceled: the statement timeout fired
_CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,  # a DSN the driver cannot parse
    asyncpg.PostgresError,  # e.g. a wrong password or an unknown database
    asyncpg.InterfaceError,
)
_MULTIPLE_COMMANDS = "cannot insert multiple commands into a prepared statement"


def asyncpg_dsn(dsn: str) -> str:
    """The DSN as asyncpg reads it (a SQLAlchemy `postgresql+asyncpg://` URL works too)."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    return dsn


async def run_query(dsn: str, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
    """Run one read-only statement and answer at most `max_rows` JSON-safe rows."""
    screen_sql(sql)
    conn = await _connect(dsn, timeout_s)
    try:
        return await _fetch(conn, sql, timeout_s=timeout_s, max_rows=max_rows)
    finally:
        await _close(conn)


async def _connect(dsn: str, timeout_s: float) -> Any:
    try:
        conn = await asyncpg.connect(
            asyncpg_dsn(dsn),
            timeout=timeout_s,
            statement_cache_size=0,
            server_settings={
                "application_name": "stream-broker integration",
                "default_transaction_read_only": "on",
            },
        )
    except _CONNECT_ERRORS as exc:
        # The class name only: a driver's text may quote the host, user or DSN.
        raise IntegrationUnavailable(
            f"cannot connect to the integration's database ({type(exc).__name__})"
        ) from exc
    try:
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
    except BaseException:
        conn.terminate()
        raise
    return conn


async def _fetch(conn: Any, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
    client_timeout = timeout_s + CLIENT_TIMEOUT_MARGIN_S
    try:
        async with conn.transaction(readonly=True):
            await conn.fetchval(
                "SELECT set_config('statement_timeout', $1, true)", f"{int(timeout_s * 1000)}ms"
            )
            statement = await conn.prepare(sql, timeout=client_timeout)
            columns = [attribute.name for attribute in statement.get_attributes()]
            cursor = await statement.cursor()
            records = await cursor.fetch(max_rows + 1, timeout=client_timeout)
    except asyncpg.PostgresError as exc:
        raise _query_error(exc) from exc
    except TimeoutError as exc:
        raise QueryTimeout(f"the query ran over {timeout_s:g} s") from exc
    except (OSError, asyncpg.ConnectionDoesNotExistError) as exc:
        raise IntegrationUnavailable(
            f"lost the connection to the integration's database ({type(exc).__name__})"
        ) from exc
    except asyncpg.InterfaceError as exc:
        raise QueryFailed(str(exc)) from exc
    rows = [[json_value(value) for value in record] for record in records[:max_rows]]
    return QueryResult(columns=columns, rows=rows, truncated=len(records) > max_rows)


def _query_error(exc: Any) -> QueryRejected | QueryTimeout | QueryFailed:
    """The contract's error for a PostgreSQL error, with the server's own message."""
    state = str(getattr(exc, "sqlstate", "") or "")
    message = str(getattr(exc, "message", "") or exc)
    if state in _TIMEOUT_SQLSTATES:
        return QueryTimeout(f"the query was cancelled: {message}")
    if state in _REJECTED_SQLSTATES or _MULTIPLE_COMMANDS in message:
        return QueryRejected(f"refused: {message}")
    return QueryFailed(message)


async def _close(conn: Any) -> None:
    """Close politely, and abort the socket if the server does not answer in time."""
    try:
        await conn.close(timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()
