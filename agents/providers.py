"""Which chat model serves a run: Claude with an API key, the scripted model without.

`ModelFactory` is the seam tests use to inject a model. The factory is called
once per run, inside the run (so a model that cannot be built ends that run
with an `error` event instead of failing the HTTP request).
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agents.scripted import ScriptedChatModel
from agents.settings import AgentSettings

__all__ = [
    "ANTHROPIC_API_URL",
    "ModelFactory",
    "claude_model",
    "default_model_factory",
    "thinking_config",
]

ANTHROPIC_API_URL = "https://api.anthropic.com"
_VERSIONED: Final = re.compile(r"^claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d))?(?:-|$)")
_LEGACY: Final = re.compile(r"^claude-\d")  # claude-3-7-sonnet and older naming


class ModelFactory(Protocol):
    """Builds the chat model of one run."""

    def __call__(self, settings: AgentSettings) -> BaseChatModel: ...


def default_model_factory(settings: AgentSettings) -> BaseChatModel:
    """Claude if `ANTHROPIC_API_KEY` is set, else the offline scripted model."""
    if settings.anthropic_api_key is not None:
        return claude_model(settings, settings.anthropic_api_key)
    return ScriptedChatModel(delay_ms=settings.agent_scripted_delay_ms)


def claude_model(settings: AgentSettings, api_key: SecretStr) -> ChatAnthropic:
    """Streaming Claude with thinking on, so reasoning reaches the viewer live.

    The base URL is always passed, so the model never falls back to reading
    the environment behind the settings' back.
    """
    return ChatAnthropic(
        model=settings.agent_model,
        api_key=api_key,
        base_url=settings.anthropic_base_url or ANTHROPIC_API_URL,
        max_retries=settings.anthropic_max_retries,
        max_tokens=settings.agent_max_tokens,
        thinking=thinking_config(settings.agent_model, settings.agent_thinking_budget),
        streaming=True,
    )


def thinking_config(model: str, budget_tokens: int) -> dict[str, Any]:
    """Extended thinking in the shape the model takes, with its text streamed to us.

    Models before the 4.6 generation only know a fixed budget. From 4.6 on,
    adaptive thinking is the supported form (budgets are deprecated, then
    refused from Opus 4.7), and newer models omit the thinking text unless
    asked for a summary, which the viewer needs. An id we cannot place is
    taken to be new.
    """
    versioned = _VERSIONED.match(model)
    if versioned is not None:
        version = (int(versioned.group(1)), int(versioned.group(2) or 0))
        legacy = version < (4, 6)
    else:
        legacy = _LEGACY.match(model) is not None
    if legacy:
        return {"type": "enabled", "budget_tokens": budget_tokens}
    return {"type": "adaptive", "display": "summarized"}
