"""The request and error bodies of the agent service's HTTP contract (design 4.4).

Unknown fields in a request are ignored rather than refused, so the broker can
send more than this version reads; a missing or malformed known field is a 422
naming it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.events import ChatMessage

__all__ = ["ErrorBody", "ErrorDetail", "Integration", "RunRequest"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Integration(_Request):
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
    integrations: list[Integration] = Field(default_factory=list)

    @field_validator("new_user_message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """`{"error": {"code", "message"}}`, the body of every error answer."""

    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message))
