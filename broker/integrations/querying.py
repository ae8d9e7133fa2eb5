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
- rows are read through a server-side cursor a few at a time, and reading
  stops at `max_rows` rows or `max_bytes` of JSON, whichever comes first
  (`truncated: true`); a cell longer than an eighth of `max_bytes` is cut
  with a marker, so a 400 MB result never sits in the broker's memory; a
  query that can be a subquery is wrapped (`rules.bounded_sql`) so that
  PostgreSQL itself cuts a long cell, and a 200 MB value never leaves it;
- before any of it, the integration policy (`broker/integrations/policy.py`):
  the host is resolved once, the address checked, the connection made to
  that address, and the server and role checked; a refusal is
  `IntegrationRefused`, and any failure to connect is one generic
  `IntegrationUnavailable` whose detail goes to the log only;
- the screen of `broker/integrations/rules.py`, which refuses a statement that does
  not start like a read before connecting.

Credentials never leave this module in a message, nor does the kind of a
connection failure (refused, timed out, wrong password...): a tenant must
not learn which ports are open by trying them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import structlog

from broker.errors import (
    IntegrationRefused,
    IntegrationUnavailable,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
)
from broker.integrations.policy import (
    DANGEROUS_ROLES,
    Policy,
    RoleFacts,
    Target,
    address_refusal,
    role_refusal,
    server_refusal,
    target_of,
)
from broker.integrations.rules import (
    QueryResult,
    bounded_cells,
    bounded_sql,
    capped_row,
    pg_date,
    pg_moment_encoder,
    pg_timestamp,
    pg_timestamptz,
    screen_sql,
)

__all__ = ["CLIENT_TIMEOUT_MARGIN_S", "asyncpg_dsn", "check_integration", "run_query"]

log = structlog.get_logger(__name__)

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
_DRIVER_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""What a statement on an open connection may raise."""
_CONNECT_ERRORS = (
    *_DRIVER_ERRORS,
    ValueError,  # a DSN the driver cannot parse
)
_MULTIPLE_COMMANDS = "cannot insert multiple commands into a prepared statement"
_PREFETCH = 8
"""Rows the cursor reads per round trip: what the broker holds of a result at once."""
_MOMENT_DECODERS = {"timestamp": pg_timestamp, "timestamptz": pg_timestamptz, "date": pg_date}
_UNAVAILABLE = "the integration's database cannot be reached"

# Every role the session user is, or may SET ROLE to; pg_roles and
# pg_control_system() are readable by any role.
_FACTS_SQL = """
SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       coalesce(bool_or(r.rolsuper), false) AS superuser,
       coalesce(bool_or(r.rolreplication), false) AS replication,
       coalesce(bool_or(r.rolbypassrls), false) AS bypass_rls,
       coalesce(bool_or(r.rolcreaterole), false) AS create_role,
       coalesce(bool_or(r.rolcreatedb), false) AS create_db,
       coalesce(array_agg(r.rolname::text) FILTER (WHERE r.rolname = ANY($1::text[])), '{}')
           AS memberships
FROM pg_roles r
WHERE pg_has_role(session_user, r.oid, 'MEMBER')
"""


def asyncpg_dsn(dsn: str) -> str:
    """The DSN as asyncpg reads it (a SQLAlchemy `postgresql+asyncpg://` URL works too)."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    return dsn


async def run_query(
    dsn: str, sql: str, *, policy: Policy, timeout_s: float, max_rows: int, max_bytes: int
) -> QueryResult:
    """Run one read-only statement; answer at most `max_rows` rows and `max_bytes` of JSON.

    Raises `IntegrationRefused` (policy), `IntegrationUnavailable`, or a `QueryError`.
    """
    screen_sql(sql)
    conn = await _connect(dsn, policy, timeout_s)
    try:
        return await _fetch(conn, sql, timeout_s=timeout_s, max_rows=max_rows, max_bytes=max_bytes)
    finally:
        await _close(conn)


async def check_integration(dsn: str, *, policy: Policy, timeout_s: float) -> None:
    """Connect as the integration would and apply the policy; raise as `run_query` does."""
    await _close(await _connect(dsn, policy, timeout_s))


async def _connect(dsn: str, policy: Policy, timeout_s: float) -> Any:
    target = target_of(dsn)
    if isinstance(target, str):
        raise IntegrationRefused(target)
    conn = None
    for host in await _checked_hosts(target, policy):
        try:
            conn = await asyncpg.connect(
                asyncpg_dsn(dsn),
                host=host,  # an address that was checked, never the name again
                port=target.port,
                password=_password_of(dsn),  # never one from the broker's own ~/.pgpass
                timeout=timeout_s,
                statement_cache_size=0,
                server_settings={
                    "application_name": "stream-broker integration",
                    "default_transaction_read_only": "on",
                },
            )
            break
        except _CONNECT_ERRORS as exc:
            # One answer for every kind of failure; the detail is for the operator only.
            log.warning("integration_connect_failed", error_type=type(exc).__name__, error=str(exc))
    if conn is None:
        raise IntegrationUnavailable(_UNAVAILABLE)
    try:
        await _check_server_and_role(conn, policy, timeout_s)
        await _set_codecs(conn)
    except BaseException as exc:
        conn.terminate()
        if isinstance(exc, _DRIVER_ERRORS):
            log.warning("integration_connect_failed", error_type=type(exc).__name__, error=str(exc))
            raise IntegrationUnavailable(_UNAVAILABLE) from exc
        raise
    return conn


async def _set_codecs(conn: Any) -> None:
    """JSON as JSON; the date and time types decoded from their binary form."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    # The driver answers 'infinity' as datetime.max: decode the binary form here.
    for name, decoder in _MOMENT_DECODERS.items():
        await conn.set_type_codec(
            name,
            encoder=pg_moment_encoder,
            decoder=decoder,
            schema="pg_catalog",
            format="tuple",
        )


def _password_of(dsn: str) -> str:
    """The DSN's password, "" when it has none (so the driver never looks one up)."""
    try:
        parts = urlsplit(dsn)
        given = parse_qs(parts.query).get("password") or [unquote(parts.password or "")]
    except ValueError:
        return ""
    return given[0]


async def _checked_hosts(target: Target, policy: Policy) -> list[str]:
    """Resolve the host once and check it; the addresses (or socket directory) to try."""
    if target.is_socket:
        addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            log.warning("integration_resolve_failed", error_type=type(exc).__name__)
            raise IntegrationUnavailable(_UNAVAILABLE) from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not policy.managed:
        reason = address_refusal(target, addresses, policy.allow)
        if reason is not None:
            raise IntegrationRefused(reason)
    if target.is_socket:
        return [target.host]
    return list(dict.fromkeys(str(address) for address in addresses))


async def _check_server_and_role(conn: Any, policy: Policy, timeout_s: float) -> None:
    """Ask the server who it is and what the role may do; `IntegrationRefused` if too much."""
    try:
        row = await conn.fetchrow(_FACTS_SQL, list(DANGEROUS_ROLES), timeout=timeout_s)
    except asyncpg.PostgresError as exc:
        if _connection_lost(conn, exc):
            raise  # `_connect` answers it as unavailable
        raise IntegrationRefused("the server does not say which server it is") from exc
    if not policy.managed:
        reason = server_refusal(str(row["system_identifier"] or ""), policy.own_identifier)
        if reason is not None:
            raise IntegrationRefused(reason)
    facts = RoleFacts(
        superuser=row["superuser"],
        replication=row["replication"],
        bypass_rls=row["bypass_rls"],
        create_role=row["create_role"],
        create_db=row["create_db"],
        memberships=frozenset(row["memberships"]),
    )
    reason = role_refusal(facts)
    if reason is not None:
        raise IntegrationRefused(reason)


async def _fetch(
    conn: Any, sql: str, *, timeout_s: float, max_rows: int, max_bytes: int
) -> QueryResult:
    client_timeout = timeout_s + CLIENT_TIMEOUT_MARGIN_S
    rows: list[list[Any]] = []
    size, truncated = 0, False
    try:
        async with conn.transaction(readonly=True):
            await conn.fetchval(
                "SELECT set_config('statement_timeout', $1, true)", f"{int(timeout_s * 1000)}ms"
            )
            statement = await conn.prepare(sql, timeout=client_timeout)
            columns = [attribute.name for attribute in statement.get_attributes()]
            max_cell_bytes = max(max_bytes // 8, 64)
            bounded = bounded_sql(sql, len(columns), max_cell_bytes)
            if bounded is not None:
                statement = await _prepare_bounded(conn, bounded, client_timeout)
            # The answer's JSON as the response writes it, so the cap is the body's size.
            envelope = {"columns": columns, "rows": [], "truncated": False}
            size = len(json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode())
            cursor = statement.cursor(prefetch=_PREFETCH, timeout=client_timeout)
            async for record in cursor:
                cells = record if bounded is None else bounded_cells(record)
                row, row_bytes = capped_row(cells, max_cell_bytes=max_cell_bytes)
                row_bytes += 1 if rows else 0  # the comma before it
                if len(rows) >= max_rows or size + row_bytes > max_bytes:
                    truncated = True
                    break
                rows.append(row)
                size += row_bytes
    except TimeoutError as exc:
        raise QueryTimeout(f"the query ran over {timeout_s:g} s") from exc
    except _DRIVER_ERRORS as exc:
        if _connection_lost(conn, exc):
            raise IntegrationUnavailable(
                f"lost the connection to the integration's database ({type(exc).__name__})"
            ) from exc
        if isinstance(exc, asyncpg.PostgresError):
            raise _query_error(exc) from exc
        raise QueryFailed(str(exc)) from exc
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


def _connection_lost(conn: Any, exc: BaseException) -> bool:
    """Whether `exc` means the server is gone, not that a statement failed.

    So: the connection closed; a socket error; SQLSTATE class 08 (connection
    exception) or 57 (operator intervention: `pg_terminate_backend`, a shutdown)
    except 57014, `query_canceled`, which is the statement timeout; or the
    driver's protocol error, met when the server's FATAL goodbye was read
    before the socket's end (see `broker.store.connection`).
    """
    if conn.is_closed() or isinstance(
        exc,
        (
            OSError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.InternalClientError,
            asyncpg.PostgresConnectionError,
        ),
    ):
        return True
    return isinstance(exc, asyncpg.OperatorInterventionError) and not isinstance(
        exc, asyncpg.QueryCanceledError
    )


async def _prepare_bounded(conn: Any, bounded: str, client_timeout: float) -> Any:
    """Prepare the wrapped statement; one that is a statement alone but no subquery is
    a write (a data-modifying WITH, SELECT INTO): `QueryRejected`."""
    try:
        return await conn.prepare(bounded, timeout=client_timeout)
    except asyncpg.PostgresError as exc:
        if str(getattr(exc, "sqlstate", "")) in _TIMEOUT_SQLSTATES:
            raise
        raise QueryRejected(f"refused: {getattr(exc, 'message', '') or exc}") from exc


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
    except _DRIVER_ERRORS:
        conn.terminate()
