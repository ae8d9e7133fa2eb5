"""How the words of a question map onto a `Catalog`: tables, columns, measures, joins.

Rule-based and schema-agnostic: a table is named by its own name (singular or
plural, `order_items` as "order items"); money is a numeric column called
like an amount (`amount`, `total`, `revenue`, `value`...) or a price times a
quantity in the same table (a bare list price is not a sale); a join follows
declared foreign keys from the many side to the one side, so a sum never
counts a row twice. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final

from agents.catalog import Catalog, Column, ForeignKey, Table

__all__ = [
    "Measure",
    "Step",
    "base_tables_first",
    "capabilities",
    "label_column",
    "literal_sql",
    "mentioned_tables",
    "money_measure",
    "path",
    "quantity_measure",
    "singular",
    "time_column",
    "words",
]

_WORD: Final = re.compile(r"[a-z0-9]+")
_READ: Final = frozenset({"select", "with", "values", "table", "explain"})
_KEYWORD: Final = re.compile(r"\s*\(*\s*([A-Za-z]+)")
_FENCE: Final = re.compile(r"^```(?:sql)?\s*|\s*```$|^`|`$", re.IGNORECASE)
_SQL_MARKS: Final = re.compile(
    r"[*,();=<>']|\b(where|limit|join|group\s+by|order\s+by|having|offset|union|distinct)\b",
    re.IGNORECASE,
)
_AMOUNT_PARTS: Final = frozenset(
    {"amount", "total", "revenue", "subtotal", "sales", "value", "gross", "net", "paid"}
)
_PRICE_PARTS: Final = frozenset({"price", "rate", "fee"})
_QUANTITY_PARTS: Final = frozenset({"quantity", "qty", "units", "count", "seats"})
_LABEL_NAMES: Final = ("name", "title", "label", "full_name", "display_name", "email", "username")
_STALE_TIME_PARTS: Final = frozenset({"updated", "modified", "deleted"})


def singular(word: str) -> str:
    """A crude English singular, enough to match table names: orders→order, categories→category."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The question's words, lower-case and singular."""
    return [singular(w) for w in _WORD.findall(text.lower())]


def _parts(name: str) -> list[str]:
    return [singular(p) for p in _WORD.findall(name.lower().replace("_", " "))]


def mentioned_tables(question: str, catalog: Catalog) -> list[Table]:
    """The tables the question names, in the order it names them (longest name wins a tie)."""
    tokens = words(question)
    found: list[tuple[int, int, Table]] = []
    for table in catalog.tables:
        parts = _parts(table.base_name)
        for i in range(len(tokens) - len(parts) + 1):
            if tokens[i : i + len(parts)] == parts:
                found.append((i, -len(parts), table))
                break
    found.sort(key=lambda item: (item[0], item[1]))
    chosen: list[Table] = []
    covered: set[int] = set()
    for start, negative_length, table in found:
        span = set(range(start, start - negative_length))
        if span & covered:
            continue
        covered |= span
        chosen.append(table)
    return chosen


def mentioned_column(
    question: str, catalog: Catalog, after: str | None
) -> tuple[Table, Column] | None:
    """The column named right after the word `after` ("by country" → customers.country).

    With `after=None`, any text column the question names ("top categories").
    """
    tokens = words(question)
    if after is not None:
        targets = [tokens[i + 1] for i, w in enumerate(tokens[:-1]) if w == after]
    else:
        targets = tokens
    for target in targets:
        for table in base_tables_first(catalog):
            for column in table.columns:
                if after is None and not column.text:
                    continue
                if _parts(column.name) and _parts(column.name)[0] == target:
                    return table, column
    return None


@dataclass(frozen=True, slots=True)
class Measure:
    """An expression summed over the rows of `table`, e.g. `quantity * unit_price`."""

    table: Table
    columns: tuple[Column, ...]

    def sql(self, alias: str) -> str:
        return " * ".join(f"{alias}.{c.sql}" for c in self.columns)

    @property
    def description(self) -> str:
        return " * ".join(c.name for c in self.columns) + f" in {self.table.name}"


def money_measure(table: Table) -> Measure | None:
    """The table's money: an amount-like column, else price * quantity; None if neither."""
    numeric = [c for c in table.columns if c.numeric and not c.name.endswith("id")]
    for column in numeric:
        if set(_parts(column.name)) & _AMOUNT_PARTS:
            return Measure(table, (column,))
    price = next((c for c in numeric if set(_parts(c.name)) & _PRICE_PARTS), None)
    quantity = next((c for c in numeric if set(_parts(c.name)) & _QUANTITY_PARTS), None)
    if price is not None and quantity is not None:
        return Measure(table, (quantity, price))
    return None


def quantity_measure(table: Table) -> Measure | None:
    """The table's count of units (`quantity`, `qty`...), if it has one."""
    for column in table.columns:
        if column.numeric and set(_parts(column.name)) & _QUANTITY_PARTS:
            return Measure(table, (column,))
    return None


def time_column(table: Table, question: str) -> Column | None:
    """The table's timestamp the question most likely means (named in it, else the first)."""
    temporal = [
        c for c in table.columns if c.temporal and not set(_parts(c.name)) & _STALE_TIME_PARTS
    ]
    tokens = set(words(question))
    named = [c for c in temporal if set(_parts(c.name)) & tokens]
    chosen = named or temporal
    return chosen[0] if chosen else None


def label_column(table: Table) -> Column:
    """What names a row of the table to a person: its name, title, email... else its key."""
    for wanted in _LABEL_NAMES:
        if (column := table.column(wanted)) is not None:
            return column
    text = [c for c in table.columns if c.text]
    if text:
        return text[0]
    key = table.column(table.primary_key[0]) if table.primary_key else None
    return key or table.columns[0]


@dataclass(frozen=True, slots=True)
class Step:
    """One join along a foreign key, from the many side to the one side."""

    table: Table
    foreign_key: ForeignKey
    target: Table


def path(catalog: Catalog, source: Table, target: Table) -> list[Step] | None:
    """The shortest chain of foreign keys from `source` to `target` ([] if the same)."""
    seen = {source.name}
    queue: deque[tuple[Table, list[Step]]] = deque([(source, [])])
    while queue:
        table, steps = queue.popleft()
        if table.name == target.name:
            return steps
        for fk in table.foreign_keys:
            ref = catalog.table(fk.ref_table)
            if ref is not None and ref.name not in seen:
                seen.add(ref.name)
                queue.append((ref, [*steps, Step(table, fk, ref)]))
    return None


def base_tables_first(catalog: Catalog) -> list[Table]:
    """The tables before the views (a view has no foreign keys to join along)."""
    return sorted(catalog.tables, key=lambda t: t.kind != "table")


def literal_sql(question: str, table_names: frozenset[str] | None = None) -> str | None:
    """The question itself when it is a read statement (code fences removed), else None.

    "select * from t limit 3" is plainly SQL; "select id from orders" only if
    `orders` is a table of `table_names` (English "select all customers from
    France" is not).
    """
    text = _FENCE.sub("", question.strip()).strip()
    first = _KEYWORD.match(text)
    keyword = first.group(1).lower() if first else ""
    if keyword not in _READ or len(text.split()) < 2:
        return None
    if keyword in ("with", "values", "table", "explain") or _SQL_MARKS.search(text):
        return text
    source = re.search(r"\bfrom\s+([A-Za-z_][\w.]*)", text, re.I)
    if table_names is not None and source is not None and source.group(1).lower() in table_names:
        return text
    return None


def capabilities(catalog: Catalog) -> str:
    """What the offline model can be asked, with examples in this database's words."""
    tables = ", ".join(f"`{name}`" for name in catalog.names)
    example = next((t.base_name for t in base_tables_first(catalog)), "rows")
    first = words(example)[:1] or ["row"]
    return (
        "I am the offline demo model, so I only answer a few kinds of question, over the "
        f'tables of this database: {tables}. You can ask for a count ("how many {example} '
        f'were there last month?"), a top-N by a sum or a count ("top 5 {first[0]}s by '
        'revenue"), a breakdown by month or by a column ("revenue by month"), a few rows '
        f'("show me some {example}"), or write a SELECT yourself. '
        "Set ANTHROPIC_API_KEY to talk to Claude."
    )
