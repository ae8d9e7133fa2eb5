"""The agent: a model ⇄ tools LangGraph, built fresh for every run.

Two nodes: `model` calls the chat model (tools bound when the run has
integrations); `tools` runs the tool calls of the model's last message, one
after the other, and loops back to `model`; a message without tool calls ends
the run. Nothing is shared between runs: the graph closes over the run's
model, toolbox and cancellation token.

The token is checked before every model call and before every tool call, so
a cancelled run never starts another; a cancel that lands mid-call is the
supervisor's job (it cancels the task). Tool progress goes to LangGraph's
custom stream (`get_stream_writer`), which the translators turn into
`tool_stream` events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Final

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from agents.cancel import CancelToken
from agents.schemas import Integration
from agents.tools import Toolbox
from agents.translate import tool_progress_payload
from models.events import ChatMessage

__all__ = ["AgentState", "build_graph", "initial_messages"]

_SYSTEM_PROMPT: Final = (
    "You are a helpful data assistant. Answer concisely. When the user asks about data, "
    "use the query_integration tool to run SQL on one of the connected integrations and "
    "base the answer on its result."
)


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def initial_messages(
    history: Sequence[ChatMessage], new_user_message: str, integrations: Sequence[Integration]
) -> list[AnyMessage]:
    """The conversation as the model sees it: one system prompt, the history, the new message.

    System messages of the history join the system prompt, because Anthropic
    takes a system prompt only at the start. A `tool` message of the history
    becomes user text: the transcript does not keep the tool call it answered,
    and a tool result without its call is refused by the API. Empty messages
    are skipped (the API refuses empty text blocks).
    """
    system = [_SYSTEM_PROMPT]
    if integrations:
        listing = "\n".join(f"- {i.id}: {i.name} ({i.kind})" for i in integrations)
        system.append(f"Connected integrations:\n{listing}")
    else:
        system.append("No integration is connected, so no data can be queried.")
    conversation: list[AnyMessage] = []
    for message in history:
        if not message.content.strip():
            continue
        if message.role == "system":
            system.append(message.content)
        elif message.role == "assistant":
            conversation.append(AIMessage(content=message.content))
        elif message.role == "tool":
            conversation.append(HumanMessage(content=f"[tool result]\n{message.content}"))
        else:
            conversation.append(HumanMessage(content=message.content))
    conversation.append(HumanMessage(content=new_user_message))
    return [SystemMessage(content="\n\n".join(system)), *conversation]


def build_graph(
    model: BaseChatModel, toolbox: Toolbox, token: CancelToken
) -> CompiledStateGraph[AgentState, None, AgentState, AgentState]:
    """The run's agent graph; stream it with modes `messages`, `updates` and `custom`."""
    specs = toolbox.specs()
    bound: Runnable[LanguageModelInput, BaseMessage] = model.bind_tools(specs) if specs else model

    async def call_model(state: AgentState) -> dict[str, list[AnyMessage]]:
        token.raise_if_cancelled()
        reply = await bound.ainvoke(state["messages"])
        return {"messages": [_as_ai_message(reply)]}

    async def call_tools(state: AgentState) -> dict[str, list[AnyMessage]]:
        last = state["messages"][-1]
        calls = last.tool_calls if isinstance(last, AIMessage) else []
        write = get_stream_writer()
        results: list[AnyMessage] = []
        for call in calls:
            token.raise_if_cancelled()
            call_id = call.get("id") or ""

            def progress(text: str, call_id: str = call_id) -> None:
                write(tool_progress_payload(call_id, text))

            outcome = await toolbox.run(call["name"], call["args"], progress=progress)
            results.append(
                ToolMessage(
                    content=json.dumps(outcome.output, default=str),
                    tool_call_id=call_id,
                    name=call["name"],
                    status="error" if outcome.is_error else "success",
                    artifact=outcome.output,
                )
            )
        return {"messages": results}

    def next_step(state: AgentState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(AgentState)
    graph.add_node("model", call_model)
    graph.add_node("tools", call_tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", next_step, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(name="agent")


def _as_ai_message(message: Any) -> AIMessage:
    if isinstance(message, AIMessage):
        return message
    raise TypeError(f"the chat model returned {type(message).__name__}, not an AIMessage")
