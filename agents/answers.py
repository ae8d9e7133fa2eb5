"""The offline agent's answers in Markdown: a figure in a sentence, or rows as a table.

`answer(query, output)` tells what a planned `Query` returned (the tool's
output, `{"columns", "rows", "truncated"}`). Money columns are shown with two
decimals, counts with thousands separators; a table shows at most
`MAX_TABLE_ROWS` rows and says when there are more. A top-N ranking shows N
rows and says when the last one ties with the next ("tied with ..."). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from agents.planner import Query

__all__ = ["MAX_TABLE_ROWS", "answer", "markdown_table"]

MAX_TABLE_ROWS: Final = 50


def answer(query: Query, output: Any) -> str:
    """The Markdown answer for `query`, whose tool call returned `output`."""
    if not isinstance(output, Mapping) or not isinstance(output.get("rows"), list):
        return f"The query answered something I cannot read: {json.dumps(output, default=str)}"
    columns = [str(c) for c in output.get("columns") or []]
    rows: list[list[Any]] = [r for r in output["rows"] if isinstance(r, list)]
    truncated = bool(output.get("truncated"))
    if query.kind == "value" and rows and rows[0]:
        return query.headline.format(value=_cell(columns[0], rows[0][0], query.money))
    if not rows:
        return f"{query.headline}\n\nThe query returned no rows."
    if len(rows) == 1 and len(columns) == 1:
        return f"{query.headline} **{_cell(columns[0], rows[0][0], query.money)}**"
    if query.top is not None:
        return _ranking(query, columns, rows, query.top)
    more = ""
    if truncated or len(rows) > MAX_TABLE_ROWS:
        shown = min(len(rows), MAX_TABLE_ROWS)
        more = f"\n\nShowing the first {shown} rows; the query returned more."
    return f"{query.headline}\n\n{markdown_table(columns, rows, query.money)}{more}"


def _ranking(query: Query, columns: list[str], rows: list[list[Any]], top: int) -> str:
    """The first `top` rows; the statement read one more to see a tie at the cut."""
    shown, rest = rows[:top], rows[top:]
    table = f"{query.headline}\n\n{markdown_table(columns, shown, query.money)}"
    if not rest or not shown or len(columns) < 2:
        return table
    last, following = shown[-1], rest[0]
    if last[-1] != following[-1]:
        return table
    value = _cell(columns[-1], last[-1], query.money)
    return (
        f"{table}\n\n({_escape(str(last[0]))} is tied with {_escape(str(following[0]))} "
        f"at {value}: more rows share the last place than the {top} shown.)"
    )


def markdown_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], money: frozenset[str] = frozenset()
) -> str:
    """A GitHub-flavoured Markdown table of the first `MAX_TABLE_ROWS` rows."""
    header = "| " + " | ".join(_escape(c) for c in columns) + " |"
    rule = "|" + "|".join("---:" if c in money else "---" for c in columns) + "|"
    body = [
        "| " + " | ".join(_cell(c, v, money) for c, v in zip(columns, row, strict=False)) + " |"
        for row in rows[:MAX_TABLE_ROWS]
    ]
    return "\n".join([header, rule, *body])


def _cell(column: str, value: Any, money: frozenset[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column in money:
        try:
            return f"{float(value):,.2f}"
        except (TypeError, ValueError):
            return _escape(str(value))
    if isinstance(value, int):
        return str(value) if column == "id" or column.endswith("_id") else f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if value != int(value) else f"{int(value):,}"
    if isinstance(value, (dict, list)):
        return _escape(json.dumps(value))
    return _escape(str(value))


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())
