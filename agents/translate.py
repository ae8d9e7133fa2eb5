"""LangGraph stream parts → typed stream events, through a chain of small translators.

The run streams its graph with `stream_mode=["messages", "updates", "custom"]`
(LangGraph's v2 parts, `{"type", "ns", "data"}`). `items_of` cuts a part into
items, one per shape:

- `("block", dict)`: a content block of a model chunk (`messages` mode). Both
  ChatAnthropic and the scripted model emit Anthropic's shapes: `thinking`
  (a `thinking_delta`, or `signature_delta` with empty text), `text`,
  `tool_use` (the block start, input still empty), `input_json_delta`,
  `redacted_thinking`.
- `("message", BaseMessage)`: a finished message a node returned (`updates`
  mode): the model's `AIMessage` with its parsed `tool_calls`, a `ToolMessage`.
- `("echo", BaseMessage)`: the same finished messages, repeated by
  `messages` mode.
- `("custom", value)`: what a node wrote with `get_stream_writer()`.
- `("part", value)`: a part of a mode we do not handle.

Each translator recognises one shape and returns its events (possibly none,
for a shape that is known but has nothing to show) or None ("not mine"). The
first match wins. An item no translator claims is dropped and counted by kind;
the run logs the counts at its end, so a new SDK shape shows up in the logs
instead of crashing a stream or silently vanishing.

Why a complete `tool_use` comes from `updates` rather than the chunks: the
input arrives as `input_json_delta` fragments; LangChain already accumulates
and parses them into the message's `tool_calls`, so taking the finished
message avoids a second JSON accumulator here, and keeps these functions pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage

from models.events import (
    ReasoningText,
    StreamEvent,
    Text,
    TextData,
    ToolResult,
    ToolResultData,
    ToolStream,
    ToolStreamData,
    ToolUse,
    ToolUseData,
)

__all__ = [
    "DEFAULT_CHAIN",
    "TOOL_PROGRESS",
    "Item",
    "StreamTranslator",
    "Translator",
    "echoed_message",
    "input_json_delta",
    "items_of",
    "redacted_thinking",
    "text_delta",
    "thinking_delta",
    "tool_calls",
    "tool_progress",
    "tool_progress_payload",
    "tool_result",
    "tool_use_start",
]

Item = tuple[str, Any]
Translator = Callable[[Item], Sequence[StreamEvent] | None]

TOOL_PROGRESS: Final = "tool_progress"
"""The `kind` of the custom-stream payload a tool writes to report progress."""


def tool_progress_payload(tool_use_id: str, text: str) -> dict[str, str]:
    """What a tool writes to the custom stream to report progress (see `tool_progress`)."""
    return {"kind": TOOL_PROGRESS, "tool_use_id": tool_use_id, "text": text}


def items_of(part: Mapping[str, Any]) -> Iterator[Item]:
    """Cut one LangGraph v2 stream part into the items the translators look at."""
    mode = part.get("type")
    data = part.get("data")
    if mode == "messages" and isinstance(data, tuple) and data:
        message = data[0]
        if isinstance(message, AIMessageChunk):
            yield from _blocks_of(message.content)
        elif isinstance(message, BaseMessage):
            yield ("echo", message)
        else:
            yield ("part", part)
    elif mode == "updates" and isinstance(data, Mapping):
        for update in data.values():
            messages = update.get("messages", ()) if isinstance(update, Mapping) else ()
            for message in messages:
                yield ("message", message)
    elif mode == "custom":
        yield ("custom", data)
    else:
        yield ("part", part)


def _blocks_of(content: str | list[str | dict[str, Any]]) -> Iterator[Item]:
    # A model without tools or thinking may stream plain strings; they are text deltas.
    if isinstance(content, str):
        if content:
            yield ("block", {"type": "text", "text": content})
        return
    for block in content:
        if isinstance(block, str):
            if block:
                yield ("block", {"type": "text", "text": block})
        else:
            yield ("block", block)


def _block(item: Item, block_type: str) -> dict[str, Any] | None:
    source, value = item
    if source == "block" and isinstance(value, dict) and value.get("type") == block_type:
        return value
    return None


def thinking_delta(item: Item) -> Sequence[StreamEvent] | None:
    """A thinking delta → `reasoning_text`; a signature delta (empty text) → nothing."""
    block = _block(item, "thinking")
    if block is None:
        return None
    text = block.get("thinking")
    return [ReasoningText(data=TextData(text=text))] if isinstance(text, str) and text else []


def redacted_thinking(item: Item) -> Sequence[StreamEvent] | None:
    """Encrypted reasoning: nothing a viewer could read."""
    return None if _block(item, "redacted_thinking") is None else []


def text_delta(item: Item) -> Sequence[StreamEvent] | None:
    """A text delta → `text` (a citation-only delta carries no text → nothing)."""
    block = _block(item, "text")
    if block is None:
        return None
    text = block.get("text")
    return [Text(data=TextData(text=text))] if isinstance(text, str) and text else []


def tool_use_start(item: Item) -> Sequence[StreamEvent] | None:
    """The start of a tool_use block: its input is still empty; `tool_calls` reports it."""
    return None if _block(item, "tool_use") is None else []


def input_json_delta(item: Item) -> Sequence[StreamEvent] | None:
    """A fragment of a tool's input JSON: `tool_calls` reports the parsed whole."""
    return None if _block(item, "input_json_delta") is None else []


def tool_calls(item: Item) -> Sequence[StreamEvent] | None:
    """The model's finished message → one `tool_use` per tool call, input fully parsed."""
    source, message = item
    if source != "message" or not isinstance(message, AIMessage):
        return None
    return [
        ToolUse(
            data=ToolUseData(
                tool_use_id=call.get("id") or "", name=call["name"], input=dict(call["args"])
            )
        )
        for call in message.tool_calls
    ]


def tool_result(item: Item) -> Sequence[StreamEvent] | None:
    """A tool's message → `tool_result`; structured output travels as the artifact."""
    source, message = item
    if source != "message" or not isinstance(message, ToolMessage):
        return None
    output = message.artifact if message.artifact is not None else message.content
    data = ToolResultData(
        tool_use_id=message.tool_call_id, output=output, is_error=message.status == "error"
    )
    return [ToolResult(data=data)]


def tool_progress(item: Item) -> Sequence[StreamEvent] | None:
    """A tool's progress note (written with `tool_progress_payload`) → `tool_stream`."""
    source, value = item
    if (
        source != "custom"
        or not isinstance(value, Mapping)
        or value.get("kind") != TOOL_PROGRESS
        or not isinstance(value.get("tool_use_id"), str)
        or not isinstance(value.get("text"), str)
    ):
        return None
    return [ToolStream(data=ToolStreamData(tool_use_id=value["tool_use_id"], text=value["text"]))]


def echoed_message(item: Item) -> Sequence[StreamEvent] | None:
    """A finished message repeated by `messages` mode: `updates` already reports it."""
    return None if item[0] != "echo" else []


DEFAULT_CHAIN: Final[tuple[Translator, ...]] = (
    thinking_delta,
    text_delta,
    tool_use_start,
    input_json_delta,
    redacted_thinking,
    tool_calls,
    tool_result,
    tool_progress,
    echoed_message,
)


class StreamTranslator:
    """Runs the chain over a run's parts and counts what it had to drop."""

    def __init__(self, chain: Sequence[Translator] = DEFAULT_CHAIN) -> None:
        self._chain = tuple(chain)
        self.dropped: Counter[str] = Counter()

    def translate(self, part: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for item in items_of(part):
            for translator in self._chain:
                result = translator(item)
                if result is not None:
                    events.extend(result)
                    break
            else:
                self.dropped[_kind(item)] += 1
        return events


def _kind(item: Item) -> str:
    source, value = item
    if isinstance(value, Mapping):
        detail = value.get("type") or value.get("kind")
        return f"{source}:{detail}" if isinstance(detail, str) else source
    return f"{source}:{type(value).__name__}"
