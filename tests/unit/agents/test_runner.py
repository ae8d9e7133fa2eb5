"""A run's event source, driven without HTTP: the scripted model through the real graph."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agents.callback import BrokerCallback
from agents.cancel import CancelToken
from agents.graph import initial_messages
from agents.runner import agent_events, assistant_messages
from agents.schemas import Integration, RunRequest
from agents.scripted import ScriptedChatModel
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    ErrorEvent,
    StreamEvent,
    Text,
)


@pytest.fixture
async def callback() -> AsyncIterator[BrokerCallback]:
    # Never called by these runs (no integrations); the e2e tests exercise it.
    async with httpx.AsyncClient() as client:
        yield BrokerCallback(
            client, broker_url="http://127.0.0.1:9", secret="s", request_id="r", timeout_s=1
        )


def _request(message: str) -> RunRequest:
    return RunRequest(run_id="r1", thread_id="t1", new_user_message=message)


async def _run(
    message: str, model: BaseChatModel, callback: BrokerCallback, token: CancelToken | None = None
) -> list[StreamEvent]:
    events = agent_events(
        _request(message),
        model_factory=lambda: model,
        callback=callback,
        token=token or CancelToken(),
        log=structlog.get_logger("test"),
    )
    return [event async for event in events]


async def test_a_plain_message_streams_reasoning_then_text_then_complete(
    callback: BrokerCallback,
) -> None:
    model = ScriptedChatModel(delay_ms=0)
    events = await _run("Hello there", model, callback)
    kinds = [e.event_type for e in events]
    first_text = kinds.index("text")
    assert set(kinds[:first_text]) == {"reasoning_text"}
    assert set(kinds[first_text:-1]) == {"text"}
    complete = events[-1]
    assert isinstance(complete, Complete)
    answer = "".join(e.data.text for e in events if isinstance(e, Text))
    assert complete.data.new_messages == [ChatMessage(role="assistant", content=answer)]
    assert model.calls == 1


async def test_a_cancelled_token_stops_the_run_before_the_model_is_called(
    callback: BrokerCallback,
) -> None:
    model = ScriptedChatModel(delay_ms=0)
    token = CancelToken()
    token.cancel("agent")
    assert await _run("Hello", model, callback, token) == [
        Cancelled(data=CancelledData(by="agent"))
    ]
    assert model.calls == 0


async def test_a_model_that_cannot_be_built_ends_the_run_with_an_error(
    callback: BrokerCallback,
) -> None:
    def broken() -> BaseChatModel:
        raise ValueError("no such model")

    events = [
        e
        async for e in agent_events(
            _request("Hello"),
            model_factory=broken,
            callback=callback,
            token=CancelToken(),
            log=structlog.get_logger("test"),
        )
    ]
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].data.error == "no such model"
    assert events[0].data.error_type == "internal_error"


async def test_the_bench_load_bypasses_the_graph_for_the_scripted_model(
    callback: BrokerCallback,
) -> None:
    model = ScriptedChatModel(delay_ms=0)
    events = await _run("bench events=5 rate=1000 size=3", model, callback)
    assert [e.event_type for e in events] == ["text"] * 5 + ["complete"]
    assert model.calls == 0


def test_initial_messages_put_one_system_prompt_first() -> None:
    history = [
        ChatMessage(role="user", content="hi"),
        ChatMessage(role="assistant", content="hello"),
        ChatMessage(role="system", content="Be terse."),
        ChatMessage(role="tool", content='{"rows": []}'),
        ChatMessage(role="assistant", content="   "),
    ]
    shop = Integration(id="int_shop", kind="postgres", name="shop")
    messages = initial_messages(history, "and now?", [shop])
    assert [type(m) for m in messages] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
        HumanMessage,
    ]
    system = messages[0].text
    assert "Be terse." in system and "int_shop: shop (postgres)" in system
    assert messages[3].text == '[tool result]\n{"rows": []}'
    assert messages[-1].text == "and now?"


def test_assistant_messages_come_from_model_updates_with_text() -> None:
    part = {
        "type": "updates",
        "ns": (),
        "data": {
            "model": {
                "messages": [
                    AIMessage(content=[{"type": "thinking", "thinking": "x"}]),
                    AIMessage(content=[{"type": "text", "text": "Done."}]),
                ]
            }
        },
    }
    assert assistant_messages(part) == [ChatMessage(role="assistant", content="Done.")]
    assert assistant_messages({"type": "custom", "ns": (), "data": {}}) == []
