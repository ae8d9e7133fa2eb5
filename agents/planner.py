"""`plan(question, catalog, latest)`: the SQL the offline agent runs for a question, or "can't".

Pure and deterministic, so the scripted model can re-plan at every turn from
the conversation alone. The kinds of question, tried in this order:

- a literal read statement (`select * from orders limit 3`): run as written;
- a breakdown by month, or by a named column (`orders by status`);
- a top-N by a sum or a count (`which customers spent the most`);
- a count (`how many orders last month`), or a total of money or units;
- listing rows (`show me some orders`, `the 5 latest events`).

Anything else is a `Cannot` that says what can be asked and names the tables.
A period relative to the data ("last month") first needs the table's latest
timestamp: `plan` answers a `Lookup` (its SQL), and once the caller has its
result it passes `latest={lookup.sql: value}` and gets the query.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from agents.catalog import Catalog, Column, Table
from agents.joins import Joins, date_literal, month_key
from agents.periods import Bounds, Period, date_of, find_period
from agents.vocabulary import (
    Measure,
    base_tables_first,
    capabilities,
    label_column,
    literal_sql,
    mentioned_column,
    mentioned_tables,
    money_measure,
    path,
    quantity_measure,
    time_column,
)

__all__ = ["Cannot", "Lookup", "Plan", "Query", "plan"]

_MONTHLY: Final = re.compile(
    r"\b(by|per|each|every)\s+month\b|\bmonthly\b|\bmonth\s+by\s+month\b|\bover\s+time\b", re.I
)
_TOP: Final = re.compile(
    r"\b(top|most|highest|biggest|largest|best|least|lowest|fewest|worst|rank|ranking)\b", re.I
)
_BEYOND: Final = re.compile(r"\b(why|predict|forecast|should|will)\b", re.I)
"""Causes, forecasts and advice: no single query answers them, so say so."""
_BOTTOM: Final = re.compile(r"\b(least|lowest|fewest|worst|bottom)\b", re.I)
_COUNT: Final = re.compile(r"\b(how\s+many|count|number\s+of)\b", re.I)
_MONEY: Final = re.compile(
    r"\b(spent|spend|spends|spending|sales|sale|revenue|revenues|turnover|income|earned|"
    r"earn|money|worth|how\s+much)\b",
    re.I,
)
_UNITS: Final = re.compile(r"\b(units|sold|quantity|quantities|volume)\b", re.I)
_LIST: Final = re.compile(
    r"\b(show|list|give|see|display|sample|examples?|some|recent|latest|newest|oldest|first)\b",
    re.I,
)
_NEWEST: Final = re.compile(r"\b(recent|latest|newest|last)\b", re.I)
_NUMBER: Final = re.compile(r"\b(\d{1,3})\b")
_PHRASES: Final = {"spent": "amount spent", "units": "number of units"}
_DEFAULT_TOP: Final = 5
_DEFAULT_ROWS: Final = 10


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the latest timestamp of `table.column` first; `sql` answers one value."""

    sql: str
    reasoning: str


@dataclass(frozen=True, slots=True)
class Query:
    """The statement to run and how to tell its result.

    `kind` picks the answer's form: `value` (one figure in `headline`'s
    `{value}`), `table` (a ranking or breakdown), `rows` (a listing or a
    literal statement). `money` names the columns shown with two decimals.
    """

    sql: str
    kind: Literal["value", "table", "rows"]
    headline: str
    reasoning: str
    money: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Cannot:
    """No query fits: `message` says what can be asked, naming the tables."""

    message: str


Plan = Lookup | Query | Cannot


def plan(question: str, catalog: Catalog, latest: Mapping[str, object] | None = None) -> Plan:
    """The next step for `question` over `catalog`; `latest` holds answered `Lookup`s."""
    names = frozenset(t.name.lower() for t in catalog.tables)
    if (sql := literal_sql(question, names)) is not None:
        return Query(sql, "rows", "The query returned:", "The user wrote SQL; I run it as written.")
    if not catalog.tables:
        return Cannot("This database has no table I can read, so I cannot answer that.")
    builder = _Builder(question, catalog, latest or {})
    planned = builder.build()
    return planned if planned is not None else Cannot(capabilities(catalog))


class _Builder:
    def __init__(self, question: str, catalog: Catalog, latest: Mapping[str, object]) -> None:
        self.question = question
        self.catalog = catalog
        self.latest = latest
        self.tables = mentioned_tables(question, catalog)
        self.period = find_period(question)

    def build(self) -> Plan | None:
        q = self.question
        if _BEYOND.search(q):
            return None
        if _MONTHLY.search(q):
            return self._grouped(monthly=True)
        if _TOP.search(q) or re.search(r"\b(by|per)\s+\w", q, re.I):
            grouped = self._grouped(monthly=False)
            if grouped is not None or _TOP.search(q):
                # A ranking of nothing this database holds is a "can't", not a total.
                return grouped
        if _COUNT.search(q) and self.tables:
            return self._count()
        if (_MONEY.search(q) or _UNITS.search(q)) and not _LIST.search(q):
            return self._total()
        if _LIST.search(q) and self.tables:
            return self._rows()
        return None

    # -- the measure and where it lives ----------------------------------------

    def _measure(
        self, target: Table | None, *, entity: bool = True
    ) -> tuple[Measure | None, Table] | None:
        """(measure or None for a count, the table whose rows are summed or counted).

        Grouping rows of an `entity` ("customers with the most orders") counts
        another table; grouping by a column ("customers by country") counts
        the column's own table when the question names it.
        """
        if _MONEY.search(self.question) or _UNITS.search(self.question):
            find = quantity_measure if _UNITS.search(self.question) else money_measure
            found = [m for t in base_tables_first(self.catalog) if (m := find(t)) is not None]
            if target is not None:
                found = [m for m in found if path(self.catalog, m.table, target) is not None]
                found.sort(key=lambda m: len(path(self.catalog, m.table, target) or []))
            return (found[0], found[0].table) if found else None
        counted = [t for t in self.tables if target is None or t.name != target.name]
        if not entity and target is not None and target.name in [t.name for t in self.tables]:
            return None, target
        if counted:
            return None, counted[0]
        if target is not None:
            referring = [
                t
                for t in base_tables_first(self.catalog)
                if any(fk.ref_table == target.name for fk in t.foreign_keys)
            ]
            return (None, referring[0]) if referring else (None, target)
        return None

    def _window(self, source: Table) -> tuple[Table, Column] | None:
        """The nearest table (joined from `source`) with a timestamp, and that timestamp."""
        found: list[tuple[int, int, Table, Column]] = []
        mentioned = [t.name for t in self.tables]
        for table in self.catalog.tables:
            column = time_column(table, self.question)
            steps = path(self.catalog, source, table)
            if column is not None and steps is not None:
                rank = mentioned.index(table.name) if table.name in mentioned else len(mentioned)
                found.append((len(steps), rank, table, column))
        found.sort(key=lambda item: (item[0], item[1]))
        return (found[0][2], found[0][3]) if found else None

    # -- the kinds of question --------------------------------------------------

    def _grouped(self, *, monthly: bool) -> Plan | None:
        entity: Table | None = None
        group_column: tuple[Table, Column] | None = None
        if not monthly:
            group_column = mentioned_column(self.question, self.catalog, "by")
            if group_column is None and self.tables:
                entity = self.tables[0]
            if group_column is None and entity is None:
                group_column = mentioned_column(self.question, self.catalog, None)
            if group_column is None and entity is None:
                return None
        target = entity or (group_column[0] if group_column else None)
        measured = self._measure(target, entity=entity is not None)
        if measured is None:
            return None
        measure, source = measured
        if monthly:
            window = self._window(source)
            if window is None:
                return None
            target = window[0]
        joins = Joins(self.catalog, source)
        if target is not None and not joins.reach(target):
            return None
        value, value_name = self._value(measure, source, joins)
        if monthly:
            table, column = self._window(source) or (source, source.columns[0])
            key = month_key(joins.alias(table), column)
            select, group, order = f"{key} AS month", "1", "1"
            heading = f"{_PHRASES.get(value_name, value_name)} by month (UTC)"
        elif entity is not None:
            alias, label = joins.alias(entity), label_column(entity)
            keys = [f"{alias}.{c}" for c in entity.primary_key] or [f"{alias}.{label.sql}"]
            select = f"{alias}.{label.sql} AS {label.sql}"
            group = ", ".join([*keys, f"{alias}.{label.sql}"])
            direction = "ASC" if _BOTTOM.search(self.question) else "DESC"
            order = f"{value_name} {direction}, {keys[0]}"
            heading = f"{entity.name} by {_PHRASES.get(value_name, value_name)}"
        else:
            assert group_column is not None
            alias, column = joins.alias(group_column[0]), group_column[1]
            select, group = f"{alias}.{column.sql} AS {column.sql}", "1"
            direction = "ASC" if _BOTTOM.search(self.question) else "DESC"
            order = f"{value_name} {direction}, 1"
            heading = f"{_PHRASES.get(value_name, value_name)} by {column.name}"
        where, period_text = self._where(source, joins)
        if isinstance(where, Lookup):
            return where
        limit = ""
        if not monthly and _TOP.search(self.question):
            count = self._number(_DEFAULT_TOP)
            limit = f"\nLIMIT {count}"
            if group_column is not None:
                phrase = _PHRASES.get(value_name, value_name)
                heading = f"{group_column[1].name} values by {phrase}"
            heading = f"the top {count} {heading}"
        sql = (
            f"SELECT {select}, {value} AS {value_name}\nFROM {joins.sql()}{where}\n"
            f"GROUP BY {group}\nORDER BY {order}{limit}"
        )
        what = f"the sum of {measure.description}" if measure else f"the rows of {source.name}"
        return Query(
            sql,
            "table",
            f"{heading[0].upper()}{heading[1:]}{period_text} ({value_name} = {what}):",
            f"I'll group {what} {'by month' if monthly else 'as asked'}{period_text}.",
            money=frozenset({value_name})
            if measure and not _UNITS.search(self.question)
            else frozenset(),
        )

    def _count(self) -> Plan:
        counted = self.tables[0]
        others = [t for t in self.tables[1:] if path(self.catalog, t, counted)]
        source = others[0] if others else counted
        joins = Joins(self.catalog, source)
        joins.reach(counted)
        if source is counted:
            value = "count(*)"
        else:
            keys = [f"{joins.alias(counted)}.{c}" for c in counted.primary_key] or ["*"]
            value = f"count(DISTINCT {keys[0]})" if keys != ["*"] else "count(*)"
        name = counted.base_name
        where, period_text = self._where(source, joins)
        if isinstance(where, Lookup):
            return where
        via = f" that have {source.name}" if source is not counted else ""
        scope = period_text or " in total"
        return Query(
            f"SELECT {value} AS {name}\nFROM {joins.sql()}{where}",
            "value",
            f"There {'were' if period_text else 'are'} **{{value}}** {counted.name}{via}{scope}.",
            f"I'll count the rows of {counted.name}{via}{period_text}.",
        )

    def _total(self) -> Plan | None:
        measured = self._measure(None)
        if measured is None or measured[0] is None:
            return None
        measure, source = measured[0], measured[1]
        joins = Joins(self.catalog, source)
        value, value_name = self._value(measure, source, joins)
        where, period_text = self._where(source, joins)
        if isinstance(where, Lookup):
            return where
        units = _UNITS.search(self.question) is not None
        return Query(
            f"SELECT {value} AS {value_name}\nFROM {joins.sql()}{where}",
            "value",
            f"The total {_PHRASES.get(value_name, value_name)} is **{{value}}**"
            f"{period_text or ' over all the data'} "
            f"(the sum of {measure.description}).",
            f"I'll add up {measure.description}{period_text}.",
            money=frozenset() if units else frozenset({value_name}),
        )

    def _rows(self) -> Plan:
        table = self.tables[0]
        joins = Joins(self.catalog, table)
        count = self._number(_DEFAULT_ROWS)
        column = time_column(table, self.question)
        if column is not None and _NEWEST.search(self.question) and not self.period:
            order = f"\nORDER BY t0.{column.sql} DESC"
            how = f"the {count} latest {table.name} by {column.name}"
        else:
            keys = ", ".join(f"t0.{c}" for c in table.primary_key)
            order = f"\nORDER BY {keys}" if keys else ""
            how = f"{count} {table.name}"
        where, period_text = self._where(table, joins)
        if isinstance(where, Lookup):
            return where
        return Query(
            f"SELECT t0.*\nFROM {table.name} t0{where}{order}\nLIMIT {count}",
            "rows",
            f"Here are {how}{period_text}:",
            f"I'll list {how}{period_text}.",
        )

    # -- pieces -----------------------------------------------------------------

    def _value(self, measure: Measure | None, source: Table, joins: Joins) -> tuple[str, str]:
        if measure is None:
            return "count(*)", f"{source.base_name}"
        name = _money_word(self.question) if not _UNITS.search(self.question) else "units"
        return f"sum({measure.sql(joins.alias(source))})", name

    def _where(self, source: Table, joins: Joins) -> tuple[str | Lookup, str]:
        """(` WHERE ...` or "", ", in <period>") or a Lookup of the latest timestamp."""
        if self.period is None:
            return "", ""
        window = self._window(source)
        if window is None:
            return "", f" (no timestamp to apply {self.period.phrase!r} to, so over all rows)"
        table, column = window
        bounds = self._bounds(self.period, table, column)
        if isinstance(bounds, Lookup):
            return bounds, ""
        joins.reach(table)
        ref = f"{joins.alias(table)}.{column.sql}"
        where = (
            f"\nWHERE {ref} >= {date_literal(column, bounds.start)} "
            f"AND {ref} < {date_literal(column, bounds.end)}"
        )
        described = bounds.description.replace(
            "the latest date in the data", f"the latest {column.name}"
        )
        return where, f" in {described}"

    def _bounds(self, period: Period, table: Table, column: Column) -> Bounds | Lookup:
        if not period.relative:
            return period.bounds(None)
        sql = f"SELECT max({column.sql}) AS latest FROM {table.name}"
        if sql not in self.latest:
            return Lookup(
                sql,
                f"{period.phrase!r} is relative, and this data does not move with the clock, "
                f"so I'll first read the latest {column.name} in {table.name}.",
            )
        value = self.latest[sql]
        latest = date_of(value)
        if latest is None:
            return Bounds(dt.date.min, dt.date.min, f"{period.phrase} (but {table.name} is empty)")
        return period.bounds(latest)

    def _number(self, default: int) -> int:
        for match in _NUMBER.finditer(self.question):
            if 0 < int(match.group(1)) <= 100:
                return int(match.group(1))
        return default


def _money_word(question: str) -> str:
    match = _MONEY.search(question)
    word = match.group(1).lower() if match else "revenue"
    if word.startswith("spen"):
        return "spent"
    if word.startswith("sale"):
        return "sales"
    return "revenue"
