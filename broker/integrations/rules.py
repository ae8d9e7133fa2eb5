"""An integration query as plain data: what may be sent, what comes back, how it fails.

Pure: no driver, no I/O, so all of it is unit-tested. `broker/integrations/querying.py`
does the I/O around it.

The screen (`screen_sql`) only admits statements that start with a reading
keyword. It is NOT what keeps a query read-only: that is the read-only
transaction (and, for the demo, a SELECT-only role), which also refuses a
writable CTE or a function that writes. The screen exists to answer an
obvious write with a clear message without connecting, and to keep out the
statements a read-only transaction still allows and an over-privileged DSN
could abuse (`COPY ... TO PROGRAM`, `DO`, `CALL`, `SET`, `COMMIT`).

Failures are the `IntegrationError` subtree of `broker/errors.py`, each with
the contract's error code (`query_rejected`, `query_timeout`, `query_failed`,
`integration_unavailable`). Their messages are safe to show to the caller:
they never carry credentials.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.errors import QueryRejected

__all__ = [
    "CUT_MARKER",
    "READ_KEYWORDS",
    "CutCell",
    "JsonValue",
    "QueryResult",
    "bounded_cells",
    "bounded_sql",
    "capped_row",
    "json_value",
    "leading_keyword",
    "pg_date",
    "pg_moment_encoder",
    "pg_timestamp",
    "pg_timestamptz",
    "screen_sql",
]

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

READ_KEYWORDS = frozenset({"select", "with", "values", "table", "explain", "show"})
"""The first words of the statements an integration query may be."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a query answered: at most the row cap, and whether more were left."""

    columns: list[str]
    rows: list[list[JsonValue]]
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}


CUT_MARKER = "…[cut: {bytes} bytes]"
"""Ends a cell that was cut; `{bytes}` is the length of the whole value in UTF-8 bytes."""


def capped_row(record: Iterable[Any], *, max_cell_bytes: int) -> tuple[list[JsonValue], int]:
    """A row as JSON values, each cell cut to `max_cell_bytes`; and its JSON size in bytes.

    A cell is measured as JSON; one over the cap becomes a string: its start
    (whole characters only) followed by `CUT_MARKER`. A `CutCell` (cut by
    PostgreSQL, see `bounded_sql`) is its text form's start and the marker.
    """
    row: list[JsonValue] = []
    size = 0
    keep = max(max_cell_bytes - 64, 0)
    for value in record:
        if isinstance(value, CutCell):
            start = value.start.encode()[:keep].decode(errors="ignore")
            cell: JsonValue = start + CUT_MARKER.format(bytes=value.whole_bytes)
            encoded = _json_bytes(cell)
            row.append(cell)
            size += len(encoded)
            continue
        cell = json_value(value)
        encoded = _json_bytes(cell)
        if len(encoded) > max_cell_bytes:
            text = cell if isinstance(cell, str) else encoded.decode()
            whole = len(text.encode())
            cell = text.encode()[:keep].decode(errors="ignore") + CUT_MARKER.format(bytes=whole)
            encoded = _json_bytes(cell)
        row.append(cell)
        size += len(encoded)
    return row, size + 2 + max(len(row) - 1, 0)  # brackets and commas


def _json_bytes(value: JsonValue) -> bytes:
    """`value` as the response writes it (compact, UTF-8)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def leading_keyword(sql: str) -> str:
    """The statement's first word, lower-cased, past blanks, comments and `(`; "" if none."""
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char.isspace() or char == "(":
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        else:
            break
    end = i
    while end < n and (sql[end].isalpha() or sql[end] == "_"):
        end += 1
    return sql[i:end].lower()


def _skip_block_comment(sql: str, start: int) -> int:
    """The index after the block comment at `start` (PostgreSQL's nest)."""
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(sql)


def screen_sql(sql: str) -> None:
    """Refuse, with `QueryRejected`, a statement that does not even start like a read."""
    keyword = leading_keyword(sql)
    if not keyword:
        raise QueryRejected("the query is empty")
    if keyword not in READ_KEYWORDS:
        allowed = ", ".join(sorted(word.upper() for word in READ_KEYWORDS))
        raise QueryRejected(
            f"only read queries are allowed ({allowed}); this one starts with {keyword.upper()}"
        )


def json_value(value: Any) -> JsonValue:
    """A database value as JSON: dates as ISO strings, bytes as base64, decimals as numbers.

    A decimal becomes a float only when the float reads back as the same
    number; otherwise its exact digits travel as a string.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[str(value)]
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if _is_range(value):
        return {
            "lower": json_value(value.lower),
            "upper": json_value(value.upper),
            "lower_inc": bool(value.lower_inc),
            "upper_inc": bool(value.upper_inc),
            "empty": bool(value.isempty),
        }
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, Iterable):
        return [json_value(item) for item in value]
    return str(value)


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
"""A float that JSON cannot carry, spelled as PostgreSQL spells it."""


def _is_range(value: Any) -> bool:
    """A range (the driver's `Range`), recognised by shape so this module needs no driver."""
    return all(
        hasattr(value, name) for name in ("lower", "upper", "lower_inc", "upper_inc", "isempty")
    )


def _decimal(value: decimal.Decimal) -> JsonValue:
    if not value.is_finite():
        return str(value)
    as_float = float(value)
    if decimal.Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def _duration(value: dt.timedelta) -> str:
    """An ISO 8601 duration, e.g. `P1DT2H0M3.5S` (`-` in front when negative)."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".")
    return f"{sign}P{value.days}DT{hours}H{minutes}M{fraction}S"


_WRAPPABLE = frozenset({"select", "with", "values", "table"})
"""The statements PostgreSQL accepts as a subquery, so `bounded_sql` can wrap them."""


@dataclass(frozen=True, slots=True)
class CutCell:
    """A cell PostgreSQL cut: its text form's start and the whole text form's UTF-8 bytes."""

    start: str
    whole_bytes: int


def bounded_sql(sql: str, column_count: int, max_cell_bytes: int) -> str | None:
    """`sql` wrapped so that PostgreSQL cuts each cell's text form to `max_cell_bytes` chars.

    Each column `cN` of the caller's statement becomes three: the value when its
    text form has at most `max_cell_bytes` bytes (else NULL), the first
    `max_cell_bytes` characters of the text form otherwise (else NULL), and the
    text form's length in bytes; `bounded_cells` reads them back. None when the
    statement cannot be a subquery (`SHOW`, `EXPLAIN`) or has no column.
    """
    if column_count < 1 or leading_keyword(sql) not in _WRAPPABLE:
        return None
    body = sql.rstrip().rstrip(";")
    names = ", ".join(f"c{i}" for i in range(1, column_count + 1))
    cap = int(max_cell_bytes)
    cells = ", ".join(
        f"CASE WHEN octet_length(q.c{i}::text) <= {cap} THEN q.c{i} END, "
        f"CASE WHEN octet_length(q.c{i}::text) > {cap} THEN left(q.c{i}::text, {cap}) END, "
        f"octet_length(q.c{i}::text)"
        for i in range(1, column_count + 1)
    )
    # OFFSET 0 keeps the caller's statement from being inlined, so it runs once per row.
    return f"SELECT {cells} FROM (SELECT * FROM (\n{body}\n) AS q0({names}) OFFSET 0) AS q"


def bounded_cells(record: Sequence[Any]) -> list[Any]:
    """A row of `bounded_sql`'s statement back as the caller's cells (`CutCell` when cut)."""
    cells: list[Any] = []
    for i in range(0, len(record), 3):
        value, start, whole = record[i], record[i + 1], record[i + 2]
        cells.append(value if start is None else CutCell(start, int(whole)))
    return cells


_EPOCH = dt.datetime(2000, 1, 1)  # PostgreSQL's, where its binary dates count from
_CYCLE_DAYS = 146097  # days in 400 Gregorian years: the calendar repeats after them
_INT64 = 2**63 - 1
_INT32 = 2**31 - 1


def pg_timestamp(parts: tuple[int]) -> dt.datetime | str:
    """A binary `timestamp` (microseconds since 2000-01-01) as a datetime.

    "infinity" and "-infinity" stay text, as does a year past 9999 (ISO 8601
    with more digits), so no value is ever answered as a wrong date.
    """
    return _moment(parts[0], None)


def pg_timestamptz(parts: tuple[int]) -> dt.datetime | str:
    """A binary `timestamptz` (microseconds since 2000-01-01 UTC), as `pg_timestamp`."""
    return _moment(parts[0], dt.UTC)


def pg_date(parts: tuple[int]) -> dt.date | str:
    """A binary `date` (days since 2000-01-01) as a date; infinities and far years as text."""
    days = parts[0]
    if days in (_INT32, -_INT32 - 1):
        return "infinity" if days > 0 else "-infinity"
    cycles, rest = divmod(days, _CYCLE_DAYS)
    day = _EPOCH.date() + dt.timedelta(days=rest)
    return day if cycles == 0 else _shift_year(day.isoformat(), day.year + 400 * cycles)


def pg_moment_encoder(value: Any) -> tuple[int]:
    """Never used: integration queries send no parameters."""
    raise TypeError("integration queries take no parameters")


def _moment(micros: int, zone: dt.tzinfo | None) -> dt.datetime | str:
    if micros in (_INT64, -_INT64 - 1):
        return "infinity" if micros > 0 else "-infinity"
    cycles, rest = divmod(micros, _CYCLE_DAYS * 86_400_000_000)
    moment = _EPOCH.replace(tzinfo=zone) + dt.timedelta(microseconds=rest)
    if cycles == 0:
        return moment
    return _shift_year(moment.isoformat(), moment.year + 400 * cycles)


def _shift_year(iso: str, year: int) -> str:
    """`iso` (which starts with a 4-digit year) with `year` instead, signed past 0000-9999."""
    text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return text + iso[4:]
