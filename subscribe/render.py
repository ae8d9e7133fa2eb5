"""Renderers of a run for the non-streaming formats, without I/O.

`run_view` is the `GET /api/runs/{run_id}` shape; `json_document_bytes` the
`application/json` answer of a subscription, `{"run": <run_view>, "events":
[<wire events>]}`. `transcript` turns the events
of a run into blocks a person reads — reasoning, tool calls with their
progress and results, the answer, how the run ended — and `render_markdown`
and `render_plain` lay the blocks out as `text/markdown` and `text/plain`.

Streamed deltas are joined into one block per uninterrupted stretch. A
`message` event repeats what its deltas already said, so it only becomes a
block when no deltas carried it; `complete`'s `new_messages` likewise fill
in the answer only when the run's text deltas are gone (retention).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.store.records import RunState
from broker.web.wirejson import dumps
from models.api import RunOut
from models.events import StoredEvent

__all__ = [
    "Block",
    "json_document_bytes",
    "render_markdown",
    "render_plain",
    "run_view",
    "transcript",
]

BlockKind = Literal["reasoning", "tool", "answer", "message", "ending"]


@dataclass(slots=True)
class Block:
    """One readable piece of a run."""

    kind: BlockKind
    text: str = ""
    title: str = ""
    tool_input: Any = None
    progress: str = ""
    result: Any = None
    has_result: bool = False
    is_error: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def run_view(state: RunState) -> RunOut:
    """A run as `GET /api/runs/{run_id}` answers it; `last_seq` is its head."""
    record = state.record
    return RunOut(
        run_id=str(record.run_id),
        thread_id=str(record.thread_id),
        status=record.status,
        last_seq=state.head,
        created_at=record.created_at,
        finished_at=record.finished_at,
        error=record.error,
    )


def json_document_bytes(state: RunState, bodies: Sequence[bytes]) -> bytes:
    """The `application/json` answer, `{"run", "events"}` as `dumps` writes it, from the
    events' wire JSON (`Frame.body`) without parsing them: what a waiting answer keeps
    is those bytes."""
    run = dumps(run_view(state).model_dump(mode="json")).encode()
    return b'{"run":%s,"events":[%s]}' % (run, b",".join(bodies))


def transcript(events: Sequence[StoredEvent]) -> list[Block]:
    """The blocks of a run's events, in order."""
    blocks: list[Block] = []
    tools: dict[str, Block] = {}
    answered = False

    def stretch(kind: BlockKind, text: str) -> None:
        if blocks and blocks[-1].kind == kind:
            blocks[-1].text += text
        else:
            blocks.append(Block(kind, text))

    for stored in events:
        event = stored.event
        if event.event_type == "reasoning_text":
            stretch("reasoning", event.data.text)
        elif event.event_type == "text":
            stretch("answer", event.data.text)
            answered = True
        elif event.event_type == "tool_use":
            block = Block("tool", title=event.data.name, tool_input=event.data.input)
            block.extra["id"] = event.data.tool_use_id
            tools[event.data.tool_use_id] = block
            blocks.append(block)
        elif event.event_type == "tool_stream":
            tool = tools.get(event.data.tool_use_id)
            if tool is not None:
                tool.progress += event.data.text
        elif event.event_type == "tool_result":
            tool = tools.get(event.data.tool_use_id)
            if tool is None:
                tool = Block("tool", title="(unknown tool)")
                tool.extra["id"] = event.data.tool_use_id
                blocks.append(tool)
            tool.result, tool.has_result = event.data.output, True
            tool.is_error = event.data.is_error
        elif event.event_type == "message":
            message = event.data.message
            said = blocks[-1].text if blocks and blocks[-1].kind == "answer" else ""
            if message.content.strip() != said.strip():
                blocks.append(Block("message", message.content, title=message.role))
        elif event.event_type == "complete":
            if not answered:
                for message in event.data.new_messages:
                    blocks.append(Block("answer", message.content))
            blocks.append(Block("ending", title="completed"))
        elif event.event_type == "error":
            ending = Block("ending", event.data.error, title="error", is_error=True)
            ending.extra["error_type"] = event.data.error_type
            blocks.append(ending)
        elif event.event_type == "cancelled":
            ending = Block("ending", title="cancelled")
            if event.data.by:
                ending.extra["by"] = event.data.by
            blocks.append(ending)
    return blocks


def _pretty(value: Any) -> tuple[str, str]:
    """A value as text, with the code-fence language that suits it."""
    if isinstance(value, str):
        return value, ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str), "json"


def _fence(text: str, language: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _ending_words(block: Block) -> str:
    if block.title == "error":
        return f"error ({block.extra.get('error_type', 'error')}): {block.text}"
    if block.title == "cancelled":
        by = block.extra.get("by")
        return f"cancelled by {by}" if by else "cancelled"
    return "completed"


def render_markdown(state: RunState, events: Sequence[StoredEvent]) -> str:
    """The run's transcript as Markdown."""
    parts = [f"# Run {state.record.run_id}", f"**Status:** {state.record.status}"]
    for block in transcript(events):
        if block.kind == "reasoning":
            quoted = "\n".join(f"> {line}" if line else ">" for line in block.text.split("\n"))
            parts.append(f"> *Reasoning*\n>\n{quoted}")
        elif block.kind == "tool":
            tool_id = block.extra.get("id", "")
            text, language = _pretty(block.tool_input)
            parts.append(f"**Tool call** `{block.title}` ({tool_id})\n\n{_fence(text, language)}")
            if block.progress:
                parts.append(_fence(block.progress))
            if block.has_result:
                label = "Tool error" if block.is_error else "Tool result"
                text, language = _pretty(block.result)
                parts.append(f"**{label}** ({tool_id})\n\n{_fence(text, language)}")
        elif block.kind == "answer":
            parts.append(block.text.strip())
        elif block.kind == "message":
            parts.append(f"**{block.title}:** {block.text.strip()}")
        else:
            parts.append(f"---\n\n*Run {_ending_words(block)}.*")
    return "\n\n".join(part for part in parts if part) + "\n"


def render_plain(state: RunState, events: Sequence[StoredEvent]) -> str:
    """The run's transcript as plain text."""
    parts = [f"Run {state.record.run_id} ({state.record.status})"]
    for block in transcript(events):
        if block.kind == "reasoning":
            parts.append(f"[reasoning]\n{block.text.strip()}")
        elif block.kind == "tool":
            tool_id = block.extra.get("id", "")
            parts.append(f"[tool call] {block.title} {tool_id}\n{_pretty(block.tool_input)[0]}")
            if block.progress:
                parts.append(f"[tool progress] {tool_id}\n{block.progress.strip()}")
            if block.has_result:
                label = "tool error" if block.is_error else "tool result"
                parts.append(f"[{label}] {tool_id}\n{_pretty(block.result)[0]}")
        elif block.kind == "answer":
            parts.append(block.text.strip())
        elif block.kind == "message":
            parts.append(f"[{block.title}]\n{block.text.strip()}")
        else:
            parts.append(f"[run {_ending_words(block)}]")
    return "\n\n".join(part for part in parts if part) + "\n"
