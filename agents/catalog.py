"""`Catalog`: the tables, columns and foreign keys of an integration, as the agent learns them.

The offline model reads them with `CATALOG_SQL`, run like any other query
through the broker's callback (so it shows as a tool call). It reads
`pg_catalog`, not `information_schema`: the latter hides foreign keys from a
role that may only SELECT, which is exactly how an integration logs in.

`parse_catalog(output)` turns the tool's output (`{"columns", "rows"}`, one
row per readable table or view) into a `Catalog`, or raises `ValueError` when
the output is not that shape. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CATALOG_SQL", "Catalog", "Column", "ForeignKey", "Table", "parse_catalog"]

CATALOG_SQL: Final = """SELECT n.nspname AS schema, c.relname AS name,
  CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END AS kind,
  (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                   ORDER BY a.attnum)
     FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT json_agg(a.attname)
     FROM pg_constraint k JOIN pg_attribute a
       ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
    WHERE k.conrelid = c.oid AND k.contype = 'p') AS primary_key,
  (SELECT json_agg(json_build_array(a.attname, fn.nspname, f.relname, fa.attname))
     FROM pg_constraint k
     JOIN pg_class f ON f.oid = k.confrelid
     JOIN pg_namespace fn ON fn.oid = f.relnamespace
     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
     JOIN pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attnum = k.confkey[1]
    WHERE k.conrelid = c.oid AND k.contype = 'f' AND cardinality(k.conkey) = 1) AS foreign_keys
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname"""
"""One row per readable table or view: schema, name, kind, columns [[name, type]],
primary_key [name], foreign_keys [[column, schema, table, column]]."""

_PLAIN: Final = re.compile(r"[a-z_][a-z0-9_]*")
_NUMERIC: Final = re.compile(r"^(smallint|integer|bigint|numeric|decimal|real|double|money)")
_TEMPORAL: Final = re.compile(r"^(date|timestamp)")
_TEXT: Final = re.compile(r"^(text|character|citext|varchar)")


def _quote(identifier: str) -> str:
    if _PLAIN.fullmatch(identifier):
        return identifier
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Column:
    """A column and its PostgreSQL type as `format_type` spells it (`numeric(10,2)`...)."""

    name: str
    type: str

    @property
    def sql(self) -> str:
        return _quote(self.name)

    @property
    def numeric(self) -> bool:
        return _NUMERIC.match(self.type) is not None

    @property
    def temporal(self) -> bool:
        return _TEMPORAL.match(self.type) is not None

    @property
    def text(self) -> bool:
        return _TEXT.match(self.type) is not None


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """`column` of the owning table references `ref_column` of the table named `ref_table`."""

    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True, slots=True)
class Table:
    """A readable table or view. `name` is how SQL names it (schema-qualified outside public)."""

    name: str
    kind: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def base_name(self) -> str:
        """The name without its schema, lower-cased, for matching words of a question."""
        return self.name.rsplit(".", 1)[-1].strip('"').lower()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The readable tables and views of one database, in name order."""

    tables: tuple[Table, ...]

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tables]


def parse_catalog(output: Any) -> Catalog:
    """The catalog in `CATALOG_SQL`'s tool output; `ValueError` if it is not that shape."""
    if not isinstance(output, Mapping) or not isinstance(output.get("rows"), list):
        raise ValueError("the catalog query did not return rows")
    columns = output.get("columns")
    expected = ["schema", "name", "kind", "columns", "primary_key", "foreign_keys"]
    if columns != expected:
        raise ValueError(f"the catalog query returned columns {columns!r}")
    tables: list[Table] = []
    for row in output["rows"]:
        if not isinstance(row, list) or len(row) != len(expected):
            raise ValueError("a catalog row is not a list of six values")
        schema, name, kind, cols, pkey, fkeys = row
        tables.append(
            Table(
                name=_qualified(str(schema), str(name)),
                kind=str(kind),
                columns=tuple(Column(str(c), str(t)) for c, t in cols or []),
                primary_key=tuple(str(c) for c in pkey or []),
                foreign_keys=tuple(
                    ForeignKey(str(c), _qualified(str(s), str(t)), str(r))
                    for c, s, t, r in fkeys or []
                ),
            )
        )
    return Catalog(tables=tuple(tables))


def _qualified(schema: str, name: str) -> str:
    return _quote(name) if schema == "public" else f"{_quote(schema)}.{_quote(name)}"
