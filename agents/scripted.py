"""`ScriptedChatModel`: an offline chat model that answers like a real one, deterministically.

It is the default without `ANTHROPIC_API_KEY`, so the whole system runs (and is
tested) with no network. It behaves like Claude with extended thinking:
reasoning deltas first; then, when the message asks for data and a
`query_integration` tool with an integration is bound, a tool call with a
plausible SQL query; after the tool result, an answer that uses it; otherwise
an answer streamed word by word. Tokens come `delay_ms` apart.

Its chunks carry the same content blocks as `ChatAnthropic`'s (`thinking`,
`text`, `tool_use` + `input_json_delta` with tool-call chunks, each with its
block `index`), so one chain of translators serves both models.

`calls` counts model invocations, so a test can tell that a cancelled run
did not call the model again.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import reduce
from typing import Any, Final

from langchain_anthropic.chat_models import convert_to_anthropic_tool
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

__all__ = ["ScriptedChatModel", "asks_for_data", "plausible_sql"]

_DATA_WORDS: Final = re.compile(
    r"\b(data|rows?|records?|query|queries|table|tables|sql|select|count|database|"
    r"how many|how much|average|total|sum)\b",
    re.IGNORECASE,
)
_TABLE_PATTERNS: Final = (
    re.compile(r"\btable\s+([A-Za-z_]\w*)", re.IGNORECASE),
    re.compile(r"\b([A-Za-z_]\w*)\s+table\b", re.IGNORECASE),
    re.compile(r"\b(?:from|of|in)\s+(?:the\s+)?([A-Za-z_]\w*)", re.IGNORECASE),
)
_NOT_TABLES: Final = frozenset(
    {
        "the",
        "a",
        "an",
        "this",
        "that",
        "my",
        "our",
        "your",
        "it",
        "there",
        "here",
        "data",
        "database",
        "rows",
        "records",
        "table",
        "query",
        "total",
        "all",
    }
)
_TOKEN: Final = re.compile(r"\s*\S+\s*")


def asks_for_data(text: str) -> bool:
    """Whether a message asks for data (rows, counts, a query...)."""
    return _DATA_WORDS.search(text) is not None


def plausible_sql(question: str) -> str:
    """A query a model might write for the question: a count, or a sample of rows."""
    table = "events"
    for pattern in _TABLE_PATTERNS:
        match = next(
            (m for m in pattern.finditer(question) if m.group(1).lower() not in _NOT_TABLES),
            None,
        )
        if match is not None:
            table = match.group(1).lower()
            break
    lowered = question.lower()
    if any(word in lowered for word in ("how many", "count", "number of")):
        return f"SELECT COUNT(*) AS count FROM {table}"
    return f"SELECT * FROM {table} LIMIT 10"


class ScriptedChatModel(BaseChatModel):
    """A deterministic stand-in for Claude: thinking, tool calls, streamed answers."""

    delay_ms: float = 25.0
    """Pause before each streamed token."""

    calls: int = 0
    """How many times the model was invoked."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in Anthropic's format, as `ChatAnthropic.bind_tools` does."""
        formatted = [dict(convert_to_anthropic_tool(tool)) for tool in tools]
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        return _result(list(_reply(messages, kwargs.get("tools") or [])))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        return _result(
            [chunk.message for chunk in chunks if isinstance(chunk.message, AIMessageChunk)]
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.calls += 1
        for chunk in _reply(messages, kwargs.get("tools") or []):
            if self.delay_ms > 0:
                await asyncio.sleep(self.delay_ms / 1000)
            yield ChatGenerationChunk(message=chunk)


def _result(chunks: list[AIMessageChunk]) -> ChatResult:
    merged = reduce(lambda left, right: left + right, chunks, AIMessageChunk(content=[]))
    return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(merged))])


def _reply(
    messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]
) -> Iterator[AIMessageChunk]:
    """The chunks of the model's next turn."""
    results = _trailing_tool_messages(messages)
    if results:
        yield from _thinking(0, "The query came back. Let me read the result and answer.")
        yield from _text(1, _answer_from_results(results))
        return
    question = _last_user_text(messages)
    query_tool = _query_tool(tools)
    if asks_for_data(question) and query_tool is not None:
        name, integration_id = query_tool
        sql = plausible_sql(question)
        yield from _thinking(
            0,
            f"The user asks for data: {_quote(question)}. I can query integration "
            f"{integration_id} with SQL using {name}. A good query is: {sql}",
        )
        yield from _tool_use(1, name, {"integration_id": integration_id, "sql": sql})
        return
    yield from _thinking(0, f"The user wrote {_quote(question)}. I'll answer directly and briefly.")
    if asks_for_data(question):
        answer = (
            "I would need to query a data source to answer that, but no integration is "
            "connected to this conversation."
        )
    else:
        answer = (
            f"You said {_quote(question)}. I am the offline scripted model, so this reply is "
            "canned, but it streams token by token like a real one. Set ANTHROPIC_API_KEY "
            "to talk to Claude."
        )
    yield from _text(1, answer)


def _thinking(index: int, text: str) -> Iterator[AIMessageChunk]:
    for token in _TOKEN.findall(text):
        yield AIMessageChunk(content=[{"type": "thinking", "thinking": token, "index": index}])
    # Claude closes every thinking block with its signature.
    signature = uuid.uuid5(uuid.NAMESPACE_OID, text).hex
    yield AIMessageChunk(
        content=[{"type": "thinking", "thinking": "", "signature": signature, "index": index}]
    )


def _text(index: int, text: str) -> Iterator[AIMessageChunk]:
    for token in _TOKEN.findall(text):
        yield AIMessageChunk(content=[{"type": "text", "text": token, "index": index}])


def _tool_use(index: int, name: str, tool_input: dict[str, Any]) -> Iterator[AIMessageChunk]:
    tool_use_id = f"toolu_{uuid.uuid4().hex[:24]}"
    yield AIMessageChunk(
        content=[
            {
                "type": "tool_use",
                "id": tool_use_id,
                "name": name,
                "input": {},
                "index": index,
            }
        ],
        tool_call_chunks=[tool_call_chunk(name=name, args="", id=tool_use_id, index=index)],
    )
    encoded = json.dumps(tool_input)
    # The API streams a tool's input in fragments; so does this model.
    step = max(1, len(encoded) // 3)
    for start in range(0, len(encoded), step):
        fragment = encoded[start : start + step]
        yield AIMessageChunk(
            content=[{"type": "input_json_delta", "partial_json": fragment, "index": index}],
            tool_call_chunks=[tool_call_chunk(name=None, args=fragment, id=None, index=index)],
        )


def _trailing_tool_messages(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        results.append(message)
    return results[::-1]


def _last_user_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text.strip()
    return ""


def _query_tool(tools: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """`(tool name, integration id)` of a bound tool that runs SQL on an integration.

    Found by its schema, as a real model would: a `sql` argument and an
    `integration_id` whose `enum` lists what may be queried.
    """
    for tool in tools:
        properties = tool.get("input_schema", {}).get("properties", {})
        integration_ids = properties.get("integration_id", {}).get("enum") or []
        if "sql" in properties and integration_ids:
            return str(tool["name"]), str(integration_ids[0])
    return None


def _answer_from_results(results: Sequence[ToolMessage]) -> str:
    parts: list[str] = []
    for message in results:
        output = message.artifact if message.artifact is not None else message.text
        if message.status == "error":
            parts.append(f"The query failed ({_error_message(output)}), so I cannot answer that.")
        else:
            parts.append(_describe_rows(output))
    return " ".join(parts)


def _error_message(output: Any) -> str:
    error = output.get("error") if isinstance(output, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(output)


def _describe_rows(output: Any) -> str:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return f"The tool answered: {output}"
    if not isinstance(output, dict) or not isinstance(output.get("rows"), list):
        return f"The tool answered: {json.dumps(output)}"
    columns = [str(column) for column in output.get("columns", [])]
    rows = output["rows"]
    more = " (truncated; there are more)" if output.get("truncated") else ""
    if len(rows) == 1 and len(columns) == 1 and isinstance(rows[0], list) and rows[0]:
        return f"The answer is {rows[0][0]}: the query returned {columns[0]} = {rows[0][0]}."
    if not rows:
        return "The query returned no rows."
    first = ", ".join(f"{c} = {v}" for c, v in zip(columns, rows[0], strict=False))
    return (
        f"The query returned {len(rows)} rows{more} with columns {', '.join(columns)}. "
        f"The first one is: {first}."
    )


def _quote(text: str, limit: int = 80) -> str:
    short = " ".join(text.split())
    return f'"{short[:limit]}…"' if len(short) > limit else f'"{short}"'
