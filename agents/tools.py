"""The agent's tools: `query_integration(integration_id, sql)`, run through the broker.

The tool's schema is built per run, with the run's integration ids as an
`enum`, so the model can only name integrations this run may reach, and the
tool refuses any other id anyway. A tool never raises into the graph: every
failure (bad arguments, an unknown integration, the callback failing) is an
outcome with `is_error`, which the model sees as an error tool result and the
viewer as a `tool_result` with `is_error: true`.

What a tool result may put into the model's context and into the stream is
capped, whatever the broker answered: at most `TOOL_RESULT_MAX_BYTES`
(64 KiB) of JSON, each text cell at most `TOOL_CELL_MAX_CHARS` (2,000)
characters, cut with `CUT_MARKER`, and rows past the budget dropped, with
`truncated: true`. 64 KiB is about 16k tokens, room for the answer's rows in
the model's context; a larger answer is one to narrow with SQL, not to read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.callback import BrokerCallback
from agents.errors import CallbackError
from agents.schemas import Integration

__all__ = [
    "CUT_MARKER",
    "QUERY_TOOL_NAME",
    "TOOL_CELL_MAX_CHARS",
    "TOOL_RESULT_MAX_BYTES",
    "ToolOutcome",
    "Toolbox",
    "cap_result",
    "query_tool_spec",
]

QUERY_TOOL_NAME: Final = "query_integration"
TOOL_RESULT_MAX_BYTES: Final = 64 * 1024
TOOL_CELL_MAX_CHARS: Final = 2_000
CUT_MARKER: Final = "…[cut]"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool call produced: JSON-able output, or an error description."""

    output: Any
    is_error: bool = False

    @classmethod
    def failure(cls, code: str, message: str) -> ToolOutcome:
        return cls(output={"error": {"code": code, "message": message}}, is_error=True)


class _QueryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: str = Field(min_length=1)
    sql: str = Field(min_length=1)


def query_tool_spec(integrations: Sequence[Integration]) -> dict[str, Any]:
    """The Anthropic-format definition of `query_integration` for these integrations."""
    listing = "; ".join(f"{i.id} = {i.name} ({i.kind})" for i in integrations)
    return {
        "name": QUERY_TOOL_NAME,
        "description": (
            "Run a read-only SQL query on one of the connected integrations and get back "
            f"its columns and rows. Integrations: {listing}."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "integration_id": {
                    "type": "string",
                    "enum": [i.id for i in integrations],
                    "description": "The id of the integration to query.",
                },
                "sql": {"type": "string", "description": "One SQL query (SELECT)."},
            },
            "required": ["integration_id", "sql"],
        },
    }


class Toolbox:
    """The tools of one run, bound to its integrations and its broker callback."""

    def __init__(
        self, callback: BrokerCallback, integrations: Sequence[Integration], *, log: Any = None
    ) -> None:
        self._callback = callback
        self._integrations = {i.id: i for i in integrations}
        self._log = log if log is not None else structlog.get_logger(__name__)

    def specs(self) -> list[dict[str, Any]]:
        """The tool definitions to bind to the model (none without integrations)."""
        if not self._integrations:
            return []
        return [query_tool_spec(list(self._integrations.values()))]

    async def run(self, name: str, args: Mapping[str, Any], *, progress: Progress) -> ToolOutcome:
        """Run one tool call, reporting progress; failures become error outcomes."""
        if name != QUERY_TOOL_NAME:
            return ToolOutcome.failure("unknown_tool", f"there is no tool named {name!r}")
        try:
            query = _QueryArgs.model_validate(dict(args))
        except ValidationError as exc:
            return ToolOutcome.failure("invalid_arguments", str(exc.errors()[0]["msg"]))
        if query.integration_id not in self._integrations:
            return ToolOutcome.failure(
                "unknown_integration",
                f"integration {query.integration_id!r} is not available to this run",
            )
        progress("running query…")
        self._log.info("tool_started", tool=name, integration_id=query.integration_id)
        try:
            result = await self._callback.query(query.integration_id, query.sql)
        except CallbackError as exc:
            self._log.warning(
                "tool_failed", tool=name, integration_id=query.integration_id, code=exc.code
            )
            progress(f"query failed: {exc.code}")
            return ToolOutcome.failure(exc.code, exc.message)
        output = cap_result(result.model_dump(mode="json"))
        rows, truncated = len(output["rows"]), bool(output["truncated"])
        self._log.info("tool_finished", tool=name, rows=rows, truncated=truncated)
        progress(f"{rows} row{'' if rows == 1 else 's'}" + (" (truncated)" if truncated else ""))
        return ToolOutcome(output=output)


def cap_result(
    result: Mapping[str, Any],
    *,
    max_bytes: int = TOOL_RESULT_MAX_BYTES,
    max_cell_chars: int = TOOL_CELL_MAX_CHARS,
) -> dict[str, Any]:
    """`{"columns", "rows", "truncated"}` within `max_bytes` of JSON (UTF-8).

    Text cells over `max_cell_chars` are cut and end with `CUT_MARKER`; rows
    that do not fit are dropped from the end; either sets `truncated`.
    """
    columns = [_cut(str(c), max_cell_chars) for c in result.get("columns", [])]
    truncated = bool(result.get("truncated", False))
    budget = max_bytes - _json_size({"columns": columns, "rows": [], "truncated": True})
    rows: list[list[Any]] = []
    for row in result.get("rows", []):
        cells = [_cut(c, max_cell_chars) if isinstance(c, str) else c for c in row]
        truncated = truncated or cells != list(row)
        size = _json_size(cells) + (1 if rows else 0)  # and the comma before it
        if size > budget:
            truncated = True
            break
        budget -= size
        rows.append(cells)
    return {"columns": columns, "rows": rows, "truncated": truncated}


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - len(CUT_MARKER)] + CUT_MARKER


def _json_size(value: Any) -> int:
    return len(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
    )
