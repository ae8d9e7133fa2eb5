"""Routes that start and stop work: threads, runs, and the cancel of a run.

    POST /api/threads                     201 a thread
    POST /api/threads/{thread_id}/runs    202 a run, its producer started
    POST /api/runs/{run_id}/cancel        202 the cancel recorded (200: already ended)

Starting a run answers 202 at once: the run row (streaming, leased to this
process), its `run_started` event and the user's message are one
transaction, and the producer runs in the background. Every refusal comes
before anything is written: shutting down (503), message too large (413),
schema (422), unknown or foreign thread (404, also for a malformed id: an id
is opaque to clients), thread busy (409, the database's partial unique index).

A cancel only records the flag and sends its wake-up, in one transaction
(`LifecyclePort.request_cancel`): the producer that owns the run, on
whichever replica, stops it (`broker.write.producer`). So it is accepted on
any replica, before the producer has even started, and as often as asked.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Body, Depends, Request, Response

from broker.errors import PayloadTooLarge, ShuttingDown
from broker.store.postgres import Store
from broker.web.auth import Principal
from broker.web.http import authenticate, get_settings, get_store, path_id, request_id_of
from broker.web.settings import Settings
from broker.write.producer import Producers
from models.api import CreateThread, RunAccepted, RunCancel, StartRun, ThreadCreated
from models.events import ChatMessage
from models.ids import RunId, ThreadId
from models.status import ACTIVE_STATUSES

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


@router.post("/api/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: str,
    response: Response,
    principal: Annotated[Principal, Depends(authenticate)],
    store: Annotated[Store, Depends(get_store)],
) -> RunCancel:
    """Ask to cancel a run: 202 while it is active (idempotent), 200 with its final status."""
    run = await store.request_cancel(
        principal.workspace_id, RunId(path_id(run_id, "run")), by=principal.member_id
    )
    if run.status not in ACTIVE_STATUSES:
        response.status_code = 200
    log.info("run_cancel_recorded", run_id=str(run.run_id), status=run.status)
    return RunCancel(run_id=str(run.run_id), status=run.status)
