"""Routes that start work: `POST /api/threads` and `POST /api/threads/{thread_id}/runs`.

Starting a run answers 202 at once: the run row (streaming, leased to this
process), its `run_started` event and the user's message are one
transaction, and the producer runs in the background. Every refusal comes
before anything is written: shutting down (503), message too large (413),
schema (422), unknown or foreign thread (404, also for a malformed id: an id
is opaque to clients), thread busy (409, the database's partial unique index).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Body, Depends, Request

from broker.errors import PayloadTooLarge, ShuttingDown
from broker.store.postgres import Store
from broker.web.auth import Principal
from broker.web.http import authenticate, get_settings, get_store, path_id, request_id_of
from broker.web.settings import Settings
from broker.write.producer import Producers
from models.api import CreateThread, RunAccepted, StartRun, ThreadCreated
from models.events import ChatMessage
from models.ids import ThreadId

__all__ = ["router"]

log = structlog.get_logger(__name__)

router = APIRouter()


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
    thread = await store.get_thread(principal.workspace_id, ThreadId(path_id(thread_id, "thread")))
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
