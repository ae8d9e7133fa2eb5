"""Reading a workspace's threads, for the page: `GET /api/threads` and `GET /api/threads/{id}`.

Extensions of the contract (design 4.1), documented in the README:

- `GET /api/threads?limit=N` → `{"threads": [Thread, ...]}`, newest first,
  `N` in 1..200 (default 50);
- `GET /api/threads/{thread_id}` → `Thread`; 404 for an unknown thread, a
  malformed id or another workspace's;

where `Thread` is `{"thread_id", "title", "created_at", "latest_run"}` and
`latest_run` is `{"run_id", "status", "created_at"}` or null.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from broker.errors import NotFound
from broker.store.postgres import Store
from broker.store.sealing import title_aad
from broker.web.auth import Principal
from broker.web.http import authenticate, get_store
from models.ids import WorkspaceId
from models.tables import Run, Thread

__all__ = ["LatestRun", "ThreadOut", "ThreadsOut", "router"]

router = APIRouter()

_threads = cast(sa.Table, Thread.__table__)
_runs = cast(sa.Table, Run.__table__)


class LatestRun(BaseModel):
    run_id: str
    status: str
    created_at: datetime


class ThreadOut(BaseModel):
    thread_id: str
    title: str | None
    created_at: datetime
    latest_run: LatestRun | None


class ThreadsOut(BaseModel):
    threads: list[ThreadOut]


def _select_threads(workspace_id: WorkspaceId) -> sa.Select[Any]:
    """Threads of a workspace, each with its newest run (a lateral join, one query)."""
    latest = (
        sa.select(_runs.c.id, _runs.c.status, _runs.c.created_at)
        .where(_runs.c.thread_id == _threads.c.id)
        .order_by(_runs.c.created_at.desc(), _runs.c.id.desc())
        .limit(1)
        .lateral("latest")
    )
    return (
        sa.select(
            _threads.c.id,
            _threads.c.title_key_id,
            _threads.c.title,
            _threads.c.created_at,
            latest.c.id.label("run_id"),
            latest.c.status,
            latest.c.created_at.label("run_created_at"),
        )
        .select_from(_threads.outerjoin(latest, sa.true()))
        .where(_threads.c.workspace_id == workspace_id)
    )


def _thread_out(store: Store, row: sa.Row[Any]) -> ThreadOut:
    """The thread as the page reads it, its title opened (sealed at rest, invariant 4)."""
    title = None
    if row.title is not None:
        title = store.keyring.decrypt(row.title_key_id, row.title, title_aad(row.id)).decode()
    run = None
    if row.run_id is not None:
        run = LatestRun(run_id=str(row.run_id), status=row.status, created_at=row.run_created_at)
    return ThreadOut(thread_id=str(row.id), title=title, created_at=row.created_at, latest_run=run)


@router.get("/api/threads")
async def list_threads(
    principal: Annotated[Principal, Depends(authenticate)],
    store: Annotated[Store, Depends(get_store)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ThreadsOut:
    """The caller's workspace's threads, newest first."""
    stmt = (
        _select_threads(principal.workspace_id)
        .order_by(_threads.c.created_at.desc(), _threads.c.id.desc())
        .limit(limit)
    )
    async with store.transaction() as conn:
        rows = (await conn.execute(stmt)).all()
    return ThreadsOut(threads=[_thread_out(store, row) for row in rows])


@router.get("/api/threads/{thread_id}")
async def get_thread(
    thread_id: str,
    principal: Annotated[Principal, Depends(authenticate)],
    store: Annotated[Store, Depends(get_store)],
) -> ThreadOut:
    """One thread of the caller's workspace with its newest run, or 404."""
    try:
        parsed = uuid.UUID(thread_id)
    except ValueError:
        raise NotFound(f"thread {thread_id[:64]!r} not found") from None
    stmt = _select_threads(principal.workspace_id).where(_threads.c.id == parsed)
    async with store.transaction() as conn:
        row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"thread {thread_id} not found")
    return _thread_out(store, row)
