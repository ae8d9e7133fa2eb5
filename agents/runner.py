"""One run's event source: the LangGraph agent (or the bench load), as typed events.

`agent_events` is what the registry's supervisor consumes. It never raises:
the run's last event is always exactly one terminal event — `complete` with
the assistant messages the run produced, `cancelled` when the token stopped
it at a boundary, or `error` naming what failed (`error_type_of`). Only
`CancelledError` (the supervisor tearing the run down) goes through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Final

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langgraph.types import StreamMode

from agents.bench import bench_events, parse_bench
from agents.callback import BrokerCallback
from agents.cancel import CancelToken
from agents.errors import RunCancelled, error_message_of, error_type_of
from agents.graph import AgentState, build_graph, initial_messages
from agents.schemas import RunRequest
from agents.scripted import ScriptedChatModel
from agents.tools import Toolbox
from agents.translate import StreamTranslator
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    StreamEvent,
)

__all__ = ["STREAM_MODES", "agent_events", "assistant_messages"]

STREAM_MODES: Final[list[StreamMode]] = ["messages", "updates", "custom"]
# Model ⇄ tools round trips a run may take before it is stopped as runaway.
_RECURSION_LIMIT: Final = 25


async def agent_events(
    request: RunRequest,
    *,
    model_factory: Callable[[], BaseChatModel],
    callback: BrokerCallback,
    token: CancelToken,
    log: Any,
) -> AsyncGenerator[StreamEvent, None]:
    """The events of one run, ending with exactly one terminal event."""
    translator = StreamTranslator()
    new_messages: list[ChatMessage] = []
    terminal: StreamEvent
    try:
        model = model_factory()
        load = parse_bench(request.new_user_message)
        if load is not None and isinstance(model, ScriptedChatModel):
            log.info("bench_started", events=load.events, rate=load.rate, size=load.size)
            async for event in bench_events(load):
                yield event
            return
        graph = build_graph(model, Toolbox(callback, request.integrations, log=log), token)
        state = AgentState(
            messages=initial_messages(
                request.history, request.new_user_message, request.integrations
            )
        )
        async for part in graph.astream(
            state,
            stream_mode=STREAM_MODES,
            version="v2",
            config={"recursion_limit": _RECURSION_LIMIT},
        ):
            token.raise_if_cancelled()
            for event in translator.translate(part):
                yield event
            new_messages.extend(assistant_messages(part))
        terminal = Complete(data=CompleteData(new_messages=new_messages))
    except RunCancelled as exc:
        terminal = Cancelled(data=CancelledData(by=exc.by))
    except Exception as exc:
        error_type, message = error_type_of(exc), error_message_of(exc)
        if error_type == "internal_error":
            log.error("run_failed", error_type=error_type, exc_info=exc)
        else:
            # An API's refusal is operations, not a bug: its traceback tells nothing more.
            log.warning("run_failed", error_type=error_type, error=message)
        terminal = ErrorEvent(data=ErrorData(error=message, error_type=error_type))
    finally:
        log.info(
            "translation_dropped",
            dropped_total=sum(translator.dropped.values()),
            dropped=dict(translator.dropped),
        )
    yield terminal


def assistant_messages(part: Mapping[str, Any]) -> list[ChatMessage]:
    """The assistant messages with text in an `updates` part (for `complete`)."""
    if part.get("type") != "updates" or not isinstance(part.get("data"), Mapping):
        return []
    found: list[ChatMessage] = []
    for update in part["data"].values():
        messages = update.get("messages", ()) if isinstance(update, Mapping) else ()
        for message in messages:
            if isinstance(message, AIMessage) and message.text.strip():
                found.append(ChatMessage(role="assistant", content=message.text))
    return found
