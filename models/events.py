"""The typed stream events: one pydantic model per `event_type`, one union.

An event on the wire between agent and broker is `{"event_type", "data"}`.
Stored and served to viewers it gains its address and time:
`{"seq", "event_type", "data", "ts"}` (`StoredEvent`). The union is
discriminated on `event_type`, so validation picks the model in one step and
an unknown type is a validation error that callers log and drop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "Cancelled",
    "CancelledData",
    "ChatMessage",
    "Complete",
    "CompleteData",
    "ErrorData",
    "ErrorEvent",
    "MessageData",
    "MessageEvent",
    "ReasoningText",
    "RunStarted",
    "RunStartedData",
    "StoredEvent",
    "StreamEvent",
    "Text",
    "TextData",
    "ToolResult",
    "ToolResultData",
    "ToolStream",
    "ToolStreamData",
    "ToolUse",
    "ToolUseData",
    "event_json_schema",
    "is_terminal",
    "parse_event",
    "parse_event_json",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Model):
    """One message of a thread's transcript."""

    role: Literal["user", "assistant", "system", "tool"]
    content: str


class RunStartedData(_Model):
    run_id: str
    thread_id: str


class TextData(_Model):
    text: str


class ToolUseData(_Model):
    tool_use_id: str
    name: str
    input: dict[str, Any]


class ToolStreamData(_Model):
    tool_use_id: str
    text: str


class ToolResultData(_Model):
    tool_use_id: str
    output: Any
    is_error: bool = False


class MessageData(_Model):
    message: ChatMessage


class CompleteData(_Model):
    new_messages: list[ChatMessage]


class ErrorData(_Model):
    error: str
    error_type: str


class CancelledData(_Model):
    by: str | None = None


class RunStarted(_Model):
    event_type: Literal["run_started"] = "run_started"
    data: RunStartedData


class ReasoningText(_Model):
    event_type: Literal["reasoning_text"] = "reasoning_text"
    data: TextData


class Text(_Model):
    event_type: Literal["text"] = "text"
    data: TextData


class ToolUse(_Model):
    event_type: Literal["tool_use"] = "tool_use"
    data: ToolUseData


class ToolStream(_Model):
    event_type: Literal["tool_stream"] = "tool_stream"
    data: ToolStreamData


class ToolResult(_Model):
    event_type: Literal["tool_result"] = "tool_result"
    data: ToolResultData


class MessageEvent(_Model):
    event_type: Literal["message"] = "message"
    data: MessageData


class Complete(_Model):
    event_type: Literal["complete"] = "complete"
    data: CompleteData


class ErrorEvent(_Model):
    event_type: Literal["error"] = "error"
    data: ErrorData


class Cancelled(_Model):
    event_type: Literal["cancelled"] = "cancelled"
    data: CancelledData


StreamEvent = Annotated[
    RunStarted
    | ReasoningText
    | Text
    | ToolUse
    | ToolStream
    | ToolResult
    | MessageEvent
    | Complete
    | ErrorEvent
    | Cancelled,
    Field(discriminator="event_type"),
]

TERMINAL_EVENT_TYPES: Final[frozenset[str]] = frozenset({"complete", "error", "cancelled"})

_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def parse_event(value: object) -> StreamEvent:
    """Validate a decoded JSON value as a stream event (raises `ValidationError`)."""
    return _adapter.validate_python(value)


def parse_event_json(raw: str | bytes) -> StreamEvent:
    """Validate a JSON document as a stream event (raises `ValidationError`)."""
    return _adapter.validate_json(raw)


def is_terminal(event: StreamEvent) -> bool:
    """Whether the event ends its run."""
    return event.event_type in TERMINAL_EVENT_TYPES


class StoredEvent(_Model):
    """An event with its address in the run: what viewers receive."""

    seq: int = Field(ge=1)
    ts: datetime
    event: StreamEvent

    def to_wire(self) -> dict[str, Any]:
        """The flat JSON object of design 4.2: seq, event_type, data, ts."""
        body = self.event.model_dump(mode="json")
        return {
            "seq": self.seq,
            "event_type": body["event_type"],
            "data": body["data"],
            "ts": _format_ts(self.ts),
        }


def _format_ts(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, as in the design's example."""
    utc = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union (checked into the browser client)."""
    return _adapter.json_schema()
