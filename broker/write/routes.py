"""Routes that start work: `POST /api/threads` and `POST /api/threads/{thread_id}/runs`.

Starting a run answers 202 at once: the run row (streaming, leased to this
process), its `run_started` event and the user's message are one
transaction, and the producer runs in the background. Every refusal comes
before anything is written: shutting down (503), message too large (413),
schema (422), unknown or foreign thread (404, also for a malformed id: an id
is opaque to clients), thread busy (409, the database's partial unique index).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from broker.errors import NotFound, PayloadTooLarge, ShuttingDown
from broker.store.postgres import Store
from broker.web.auth import Principal
from broker.web.http import authenticate, get_settings, get_store, request_id_of
from broker.web.settings import Settings
from broker.write.producer import Producers
from models.events import ChatMessage
from models.ids import ThreadId

__all__ = ["CreateThread", "RunAccepted", "StartRun", "ThreadCreated", "router"]

log = structlog.get_logger(__name__)

router = APIRouter()


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


@router.post("/api/threads", status_code=201)
async def create_thread(
    principal: Annotated[Principal, Depends(authenticate)],
    store: Annotated[Store, Depends(get_store)],
    body: Annotated[CreateThread | None, Body()] = None,
) -> ThreadCreated:
    """Create a thread in the caller's workspace."""
    thread = await store.create_thread(principal.workspace_id, body.title if body else None)
    log.info("thread_created", thread_id=str(thread.thread_id))
    return ThreadCreated(
        thread_id=str(thread.thread_id), title=thread.title, created_at=thread.created_at
    )


@router.post("/api/threads/{thread_id}/runs", status_code=202)
async def start_run(
    thread_id: str,
    body: StartRun,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    store: Annotated[Store, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> RunAccepted:
    """Start a run on a thread: 202 at once, the agent's events follow in the background."""
    producers: Producers = request.app.state.producers
    if not producers.accepting:
        raise ShuttingDown("the broker is shutting down; retry on another")
    size = len(body.message.encode())
    if size > settings.max_message_bytes:
        raise PayloadTooLarge(
            f"message is {size} bytes, over the limit of {settings.max_message_bytes}"
        )
    thread = await store.get_thread(principal.workspace_id, _thread_id(thread_id))
    request_id = request_id_of(request)
    writer_id: str = request.app.state.writer_id
    run = await store.create_run(
        thread,
        writer_id=writer_id,
        lease_s=settings.lease_s,
        request_id=request_id,
        message=ChatMessage(role="user", content=body.message),
    )
    if not producers.start(run, body.message, request_id=request_id):
        # Shutdown began while the run was being created: hand it over at once
        # rather than let its lease run out with nobody producing it.
        await store.release_runs(writer_id, [run.run_id])
        log.warning("run_handed_over_at_start", run_id=str(run.run_id))
    log.info("run_accepted", run_id=str(run.run_id), thread_id=str(thread.thread_id))
    return RunAccepted(
        run_id=str(run.run_id),
        thread_id=str(run.thread_id),
        subscribe_url=f"/api/runs/{run.run_id}/subscribe",
    )


def _thread_id(raw: str) -> ThreadId:
    try:
        return ThreadId(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"thread {raw[:64]!r} not found") from None
