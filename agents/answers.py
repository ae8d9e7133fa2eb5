"""The offline agent's answers in Markdown: a figure in a sentence, or rows as a table.

`answer(query, output)` tells what a planned `Query` returned (the tool's
output, `{"columns", "rows", "truncated"}`). Money columns are shown with two
decimals, counts with thousands separators; a table shows at most
`MAX_TABLE_ROWS` rows and says when there are more. Pure: no I/O.
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
    more = ""
    if truncated or len(rows) > MAX_TABLE_ROWS:
        shown = min(len(rows), MAX_TABLE_ROWS)
        more = f"\n\nShowing the first {shown} rows; the query returned more."
    return f"{query.headline}\n\n{markdown_table(columns, rows, query.money)}{more}"


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
