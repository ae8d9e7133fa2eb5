"""`ScriptedChatModel`: an offline chat model that answers like a real one, deterministically.

It is the default without `ANTHROPIC_API_KEY`, so the whole system runs (and is
tested) with no network. It behaves like Claude with extended thinking:
reasoning deltas first; then, when the message asks for data and a
`query_integration` tool with an integration is bound, it works like an
analyst: it reads the integration's catalog (a tool call), looks up the
latest timestamp when the question names a period relative to the data,
runs the query `agents/planner.py` writes for the question, and answers from
its rows in Markdown (`agents/answers.py`); a literal SELECT runs as written.
A question no query shape fits gets a plain answer naming the tables.
Otherwise an answer streamed word by word. Tokens come `delay_ms` apart.

It keeps no state between turns: each turn re-plans from the question and
the tool results already in the conversation.

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
from dataclasses import dataclass
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

from agents.answers import answer
from agents.catalog import CATALOG_SQL, parse_catalog
from agents.planner import Cannot, Lookup, Plan, Query, plan
from agents.vocabulary import literal_sql

__all__ = ["ScriptedChatModel", "asks_for_data"]

_DATA_WORDS: Final = re.compile(
    r"\b(data|rows?|records?|query|queries|table|tables|sql|select|count|database|"
    r"how many|how much|average|total|sum|top|most|least|which|list|show|spent|spend|"
    r"sales|revenue|monthly|number of|per|by)\b",
    re.IGNORECASE,
)
_TOKEN: Final = re.compile(r"\s*\S+\s*")
_MAX_QUERIES: Final = 4


def asks_for_data(text: str) -> bool:
    """Whether a message asks for data (rows, counts, a query...)."""
    return _DATA_WORDS.search(text) is not None


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
    question = _last_user_text(messages)
    query_tool = _query_tool(tools)
    if query_tool is not None and asks_for_data(question):
        yield from _data_turn(question, query_tool, _queries_since_question(messages))
        return
    results = _trailing_tool_messages(messages)
    if results:
        yield from _thinking(0, "The query came back. Let me read the result and answer.")
        yield from _text(1, _answer_from_results(results))
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


def _data_turn(
    question: str, query_tool: tuple[str, str], done: dict[str, _Done]
) -> Iterator[AIMessageChunk]:
    """One turn of a data question: read the catalog, look up, query, or answer.

    The model keeps no state: it re-plans from the question and the results
    already in the conversation, and calls the next query the plan needs.
    """
    name, integration_id = query_tool

    def call(reasoning: str, sql: str) -> Iterator[AIMessageChunk]:
        yield from _thinking(0, reasoning)
        yield from _tool_use(1, name, {"integration_id": integration_id, "sql": sql})

    def say(reasoning: str, text: str) -> Iterator[AIMessageChunk]:
        yield from _thinking(0, reasoning)
        yield from _text(1, text)

    failed = next((d for d in done.values() if d.is_error), None)
    if failed is not None:
        yield from say(
            "The query failed; I'll say so.",
            f"The query failed ({_error_message(failed.output)}), so I cannot answer that.",
        )
        return
    literal = literal_sql(question)
    if literal is not None:
        query = Query(literal, "rows", "The query returned:", "")
        if literal not in done:
            yield from call(f"The user wrote SQL, so I run it as written: {literal}", literal)
            return
    elif CATALOG_SQL not in done:
        yield from call(
            f"The user asks {_quote(question)}. I don't know the tables of integration "
            f"{integration_id} yet, so I'll read its catalog first: the tables, their columns "
            "and foreign keys.",
            CATALOG_SQL,
        )
        return
    else:
        try:
            catalog = parse_catalog(done[CATALOG_SQL].output)
        except ValueError as exc:
            yield from say("I cannot read the catalog.", f"I could not read the catalog: {exc}")
            return
        latest = {sql: _first_value(d.output) for sql, d in done.items() if sql != CATALOG_SQL}
        step: Plan = plan(question, catalog, latest)
        known = f"The database has {len(catalog.tables)} tables: {', '.join(catalog.names)}. "
        if isinstance(step, Cannot):
            yield from say(known + "None of my query shapes fits this question.", step.message)
            return
        if step.sql not in done and len(done) <= _MAX_QUERIES:
            yield from call(f"{known}{step.reasoning} The query:\n{step.sql}", step.sql)
            return
        if isinstance(step, Lookup) or step.sql not in done:
            yield from say(
                "I keep needing another query; I'll stop here.",
                "I could not get to an answer with the queries I ran, so I stop here.",
            )
            return
        query = step
    result = done[query.sql].output
    rows = result.get("rows") if isinstance(result, dict) else None
    count = len(rows) if isinstance(rows, list) else 0
    yield from say(
        f"The query came back with {count} row{'' if count == 1 else 's'}. "
        "Let me write the answer.",
        answer(query, result),
    )


@dataclass(frozen=True, slots=True)
class _Done:
    output: Any
    is_error: bool


def _queries_since_question(messages: Sequence[BaseMessage]) -> dict[str, _Done]:
    """The SQL of each tool call made since the last user message, with its result."""
    sql_of: dict[str, str] = {}
    done: dict[str, _Done] = {}
    tail: list[BaseMessage] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        tail.append(message)
    for message in reversed(tail):
        if isinstance(message, AIMessage):
            for tool_call in message.tool_calls:
                sql = tool_call.get("args", {}).get("sql")
                if isinstance(sql, str) and tool_call.get("id"):
                    sql_of[str(tool_call["id"])] = sql
        elif isinstance(message, ToolMessage) and message.tool_call_id in sql_of:
            done[sql_of[message.tool_call_id]] = _Done(
                _output_of(message), message.status == "error"
            )
    return done


def _output_of(message: ToolMessage) -> Any:
    if message.artifact is not None:
        return message.artifact
    try:
        return json.loads(message.text)
    except ValueError:
        return message.text


def _first_value(output: Any) -> object:
    rows = output.get("rows") if isinstance(output, dict) else None
    if isinstance(rows, list) and rows and isinstance(rows[0], list) and rows[0]:
        return rows[0][0]
    return None


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
