"""The public HTTP API's request and answer bodies (design section 4), in one place.

    write side      CreateThread -> ThreadCreated, StartRun -> RunAccepted, RunCancel
    read side       SubscribeRequest, RunOut, MessagesOut (of MessageOut)
    integrations    CreateIntegration (of PostgresCredentials) -> IntegrationOut,
                    IntegrationList, QueryRequest

Requests of the write side ignore unknown fields (clients written against a
later contract still work); the others refuse them, where a misspelt field
would silently change the answer or a secret could hide. The agent
service's own API is `models.agent_api`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    StringConstraints,
    field_validator,
)

from models.status import RunStatus

__all__ = [
    "CreateIntegration",
    "CreateThread",
    "IntegrationList",
    "IntegrationOut",
    "MessageOut",
    "MessagesOut",
    "PostgresCredentials",
    "QueryRequest",
    "RunAccepted",
    "RunCancel",
    "RunOut",
    "StartRun",
    "SubscribeRequest",
    "ThreadCreated",
]

_DSN_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})


# --- write side ---------------------------------------------------------------------


class _Body(BaseModel):
    # Unknown fields are ignored, so clients written against a later contract still work.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CreateThread(_Body):
    title: str | None = Field(default=None, max_length=500)

    @field_validator("title")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class ThreadCreated(BaseModel):
    thread_id: str
    title: str | None
    created_at: datetime


class StartRun(_Body):
    message: str

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class RunAccepted(BaseModel):
    run_id: str
    thread_id: str
    status: Literal["streaming"] = "streaming"
    subscribe_url: str


class RunCancel(BaseModel):
    """`POST /api/runs/{run_id}/cancel`: 202 while the run is active, 200 once it ended."""

    run_id: str
    status: RunStatus


# --- read side ----------------------------------------------------------------------


class SubscribeRequest(BaseModel):
    """`POST /api/runs/{run_id}/subscribe`; no body at all means `{"cursor": null}`.

    `cursor` is any JSON value here: `subscribe.cursor.parse_cursor` judges it,
    so a bool or a float is the contract's 400 `invalid_cursor`, not a 422.
    """

    # A misspelt field would silently replay the whole run; refuse it instead.
    model_config = ConfigDict(extra="forbid")

    cursor: JsonValue = None


class RunOut(BaseModel):
    run_id: str
    thread_id: str
    status: RunStatus
    last_seq: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None


class MessageOut(BaseModel):
    id: str
    run_id: str | None
    position: int
    role: str
    content: str
    created_at: datetime


class MessagesOut(BaseModel):
    messages: list[MessageOut]


# --- integrations -------------------------------------------------------------------


class PostgresCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: SecretStr = Field(min_length=1, max_length=4096)

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        # The message must not quote the value: it is answered in the 422.
        try:
            scheme = urlsplit(value.get_secret_value()).scheme
        except ValueError:
            scheme = ""
        if scheme not in _DSN_SCHEMES:
            raise ValueError("must be a postgresql:// URL")
        return value


class CreateIntegration(BaseModel):
    """`POST /api/integrations`; `kind` becomes a discriminated union when a second one lands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["postgres"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    credentials: PostgresCredentials

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # Refused before the registration connects anywhere; PostgreSQL cannot store NUL.
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class IntegrationOut(BaseModel):
    id: str
    kind: str
    name: str


class IntegrationList(BaseModel):
    integrations: list[IntegrationOut]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1, max_length=100_000)
