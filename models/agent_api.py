"""The agent service's request body (design 4.4), shared by both sides of the call.

The broker builds a `RunRequest`; the agent service validates the same model.
Unknown fields are ignored rather than refused, so a newer broker may send
more than an older agent reads; a missing or malformed known field is a 422
naming it. Integrations travel without their credentials, always; what the
run's tools may reach is named by `capability`, the run-scoped token the
broker minted (`broker.web.capability`), which they send back as
`x-run-capability` and which the agent treats as opaque.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.events import ChatMessage

__all__ = ["AgentIntegration", "RunRequest"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AgentIntegration(_Request):
    """An integration the run's tools may query through the broker (never its credentials)."""

    id: str = Field(min_length=1)
    kind: str
    name: str


class RunRequest(_Request):
    """`POST /runs/stream`: everything one run needs, since the service keeps no state."""

    run_id: str = Field(min_length=1, max_length=200)
    thread_id: str = Field(min_length=1, max_length=200)
    history: list[ChatMessage] = Field(default_factory=list)
    new_user_message: str
    integrations: list[AgentIntegration] = Field(default_factory=list)
    capability: str = Field(default="", max_length=2000)

    @field_validator("new_user_message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value
