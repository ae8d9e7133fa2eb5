"""The agent's tools: `query_integration(integration_id, sql)`, run through the broker.

The tool's schema is built per run, with the run's integration ids as an
`enum`, so the model can only name integrations this run may reach, and the
tool refuses any other id anyway. A tool never raises into the graph: every
failure (bad arguments, an unknown integration, the callback failing) is an
outcome with `is_error`, which the model sees as an error tool result and the
viewer as a `tool_result` with `is_error: true`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.callback import BrokerCallback
from agents.errors import CallbackError
from agents.schemas import Integration

__all__ = ["QUERY_TOOL_NAME", "ToolOutcome", "Toolbox", "query_tool_spec"]

QUERY_TOOL_NAME: Final = "query_integration"

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
        rows = len(result.rows)
        self._log.info("tool_finished", tool=name, rows=rows, truncated=result.truncated)
        progress(
            f"{rows} row{'' if rows == 1 else 's'}" + (" (truncated)" if result.truncated else "")
        )
        return ToolOutcome(output=result.model_dump(mode="json"))
