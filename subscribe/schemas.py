"""The read side's request and answer shapes (design 4.1), validated by pydantic."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from broker.store.records import StoredMessage

__all__ = ["MessageOut", "MessagesOut", "RunOut", "SubscribeRequest"]


class SubscribeRequest(BaseModel):
    """`POST /api/runs/{run_id}/subscribe`; no body at all means `{"cursor": null}`."""

    # A misspelt field would silently replay the whole run; refuse it instead.
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = None


class RunOut(BaseModel):
    run_id: str
    thread_id: str
    status: str
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

    @classmethod
    def of(cls, stored: StoredMessage) -> MessageOut:
        return cls(
            id=str(stored.message_id),
            run_id=str(stored.run_id) if stored.run_id is not None else None,
            position=stored.position,
            role=stored.message.role,
            content=stored.message.content,
            created_at=stored.created_at,
        )


class MessagesOut(BaseModel):
    messages: list[MessageOut]
