"""`AgentSettings`: the agent service's configuration, read from the environment.

One object per process, built by whoever starts the app (the CLI, a test) and
passed to `create_app`; nothing below reads `os.environ`. The variable names
are exact (no prefix) because the broker's `broker up` sets them for both
processes. `BROKER_LOCAL_SECRET` has no default on purpose: a missing secret
fails at start-up, not at the first request.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_MODEL", "AgentSettings"]

DEFAULT_MODEL = "claude-sonnet-4-6"


class AgentSettings(BaseSettings):
    """Settings of the agent service (environment variable names in `validation_alias`)."""

    model_config = SettingsConfigDict(
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )

    broker_local_secret: str = Field(validation_alias="BROKER_LOCAL_SECRET", min_length=1)
    """Shared with the broker: required on every call in, sent on every callback out."""

    broker_url: str = Field(default="http://127.0.0.1:8000", validation_alias="BROKER_URL")
    """Where the broker's agent callbacks live."""

    agent_detach_grace_s: float = Field(default=30.0, ge=0, validation_alias="AGENT_DETACH_GRACE_S")
    """How long a run goes on with no client attached before it is cancelled and forgotten."""

    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    """Set: runs use Claude. Unset: runs use the offline scripted model."""

    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    anthropic_max_retries: int = Field(default=2, ge=0, validation_alias="ANTHROPIC_MAX_RETRIES")
    agent_model: str = Field(default=DEFAULT_MODEL, min_length=1, validation_alias="AGENT_MODEL")
    agent_thinking_budget: int = Field(
        default=2048, ge=1024, validation_alias="AGENT_THINKING_BUDGET"
    )
    """Thinking budget in tokens for models before 4.6, which take a fixed budget (min 1024);
    newer models think adaptively (see `providers.thinking_config`)."""

    agent_max_tokens: int = Field(default=8192, ge=1, validation_alias="AGENT_MAX_TOKENS")
    agent_scripted_delay_ms: float = Field(
        default=25.0, ge=0, validation_alias="AGENT_SCRIPTED_DELAY_MS"
    )
    """Pause between the scripted model's tokens."""

    agent_run_buffer_max: int = Field(
        default=100_000, ge=2, validation_alias="AGENT_RUN_BUFFER_MAX"
    )
    """Most events one run may buffer, its terminal event included."""

    agent_tool_timeout_s: float = Field(default=30.0, gt=0, validation_alias="AGENT_TOOL_TIMEOUT_S")
    """Timeout of one integration-query callback."""

    agent_keepalive_s: float = Field(default=15.0, gt=0, validation_alias="AGENT_KEEPALIVE_S")
    """Longest silence on a run stream before a `: keepalive` comment."""

    @field_validator("broker_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
