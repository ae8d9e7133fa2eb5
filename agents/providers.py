"""Which chat model serves a run: Claude with an API key, the scripted model without.

`ModelFactory` is the seam tests use to inject a model. The factory is called
once per run, inside the run (so a model that cannot be built ends that run
with an `error` event instead of failing the HTTP request).
"""

from __future__ import annotations

from typing import Protocol

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings

__all__ = ["ANTHROPIC_API_URL", "ModelFactory", "claude_model", "default_model_factory"]

ANTHROPIC_API_URL = "https://api.anthropic.com"


class ModelFactory(Protocol):
    """Builds the chat model of one run."""

    def __call__(self, settings: AgentSettings) -> BaseChatModel: ...


def default_model_factory(settings: AgentSettings) -> BaseChatModel:
    """Claude if `ANTHROPIC_API_KEY` is set, else the offline scripted model."""
    if settings.anthropic_api_key is not None:
        return claude_model(settings, settings.anthropic_api_key)
    return ScriptedChatModel(delay_ms=settings.agent_scripted_delay_ms)


def claude_model(settings: AgentSettings, api_key: SecretStr) -> ChatAnthropic:
    """Streaming Claude with extended thinking, so reasoning reaches the viewer live.

    The base URL is always passed, so the model never falls back to reading
    the environment behind the settings' back.
    """
    return ChatAnthropic(
        model=settings.agent_model,
        api_key=api_key,
        base_url=settings.anthropic_base_url or ANTHROPIC_API_URL,
        max_retries=settings.anthropic_max_retries,
        max_tokens=settings.agent_max_tokens,
        thinking={"type": "enabled", "budget_tokens": settings.agent_thinking_budget},
        streaming=True,
    )
