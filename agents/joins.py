"""`Joins`: the FROM clause of a planned query, and the SQL spelling of its dates.

`Joins(catalog, source)` starts at `source` (alias `t0`) and `reach(table)`
adds the joins along foreign keys (from the many side to the one side) to
another table, each new table with the next alias. Timestamps with a time
zone are cut into months and compared in UTC, so a figure does not depend
on the session's time zone. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt

from agents.catalog import Catalog, Column, Table
from agents.vocabulary import path

__all__ = ["Joins", "date_literal", "month_key"]


class Joins:
    """Tables joined along foreign keys from `source` (alias t0), each with its alias."""

    def __init__(self, catalog: Catalog, source: Table) -> None:
        self._catalog = catalog
        self._aliases = {source.name: "t0"}
        self._sql = [f"{source.name} t0"]
        self._source = source

    def reach(self, target: Table) -> bool:
        """Join the tables on the way to `target`; False if no foreign keys lead there."""
        steps = path(self._catalog, self._source, target)
        if steps is None:
            return False
        for step in steps:
            if step.target.name in self._aliases:
                continue
            alias = f"t{len(self._aliases)}"
            self._aliases[step.target.name] = alias
            near = self._aliases[step.table.name]
            self._sql.append(
                f"JOIN {step.target.name} {alias} "
                f"ON {alias}.{step.foreign_key.ref_column} = {near}.{step.foreign_key.column}"
            )
        return True

    def alias(self, table: Table) -> str:
        """The alias of `table`, joining it first if needed (KeyError if unreachable)."""
        if table.name not in self._aliases:
            self.reach(table)
        return self._aliases[table.name]

    def sql(self) -> str:
        return "\n".join(self._sql)


def month_key(alias: str, column: Column) -> str:
    """`YYYY-MM` of the column, in UTC for a timestamp with a time zone."""
    ref = f"{alias}.{column.sql}"
    if "with time zone" in column.type:
        ref = f"({ref} AT TIME ZONE 'UTC')"
    return f"to_char(date_trunc('month', {ref}), 'YYYY-MM')"


def date_literal(column: Column, day: dt.date) -> str:
    """Midnight (UTC) of `day` as a literal of the column's type."""
    if column.type == "date":
        return f"DATE '{day.isoformat()}'"
    if "with time zone" in column.type:
        return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'"
    return f"TIMESTAMP '{day.isoformat()} 00:00:00'"
