"""Which model serves a run, and the thinking configuration each Claude generation takes."""

from __future__ import annotations

import pytest
from langchain_anthropic import ChatAnthropic

from agents.providers import default_model_factory, thinking_config
from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings

ADAPTIVE = {"type": "adaptive", "display": "summarized"}
BUDGET = {"type": "enabled", "budget_tokens": 4096}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-6", ADAPTIVE),
        ("claude-opus-4-7", ADAPTIVE),
        ("claude-opus-5-5", ADAPTIVE),
        ("claude-sonnet-5", ADAPTIVE),
        ("claude-fable-5-2", ADAPTIVE),
        ("claude-mythos-preview", ADAPTIVE),
        ("claude-sonnet-4-5", BUDGET),
        ("claude-sonnet-4-5-20250929", BUDGET),
        ("claude-haiku-4-5-20251001", BUDGET),
        ("claude-opus-4-1", BUDGET),
        ("claude-opus-4-20250514", BUDGET),
        ("claude-3-7-sonnet-latest", BUDGET),
    ],
)
def test_thinking_config_fits_the_model_generation(model: str, expected: object) -> None:
    assert thinking_config(model, 4096) == expected


def test_without_an_api_key_runs_use_the_scripted_model() -> None:
    settings = AgentSettings(
        broker_local_secret="s", anthropic_api_key=None, agent_scripted_delay_ms=7
    )
    model = default_model_factory(settings)
    assert isinstance(model, ScriptedChatModel) and model.delay_ms == 7


def test_with_an_api_key_runs_use_streaming_claude_at_the_configured_url() -> None:
    settings = AgentSettings(
        broker_local_secret="s",
        anthropic_api_key="sk-ant-test",
        anthropic_base_url="http://127.0.0.1:1",
        anthropic_max_retries=0,
        agent_model="claude-opus-4-7",
    )
    model = default_model_factory(settings)
    assert isinstance(model, ChatAnthropic)
    assert model.model == "claude-opus-4-7"
    assert model.anthropic_api_url == "http://127.0.0.1:1"
    assert model.max_retries == 0 and model.streaming is True
    assert model.thinking == ADAPTIVE
