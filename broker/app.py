"""The app factory: the one place that wires every part of the broker together.

`create_app(settings)` builds a FastAPI app whose lifespan opens the engine,
starts the write side (flush loop, producers, retention, the takeover
sweeper) and the read side (LISTEN connection, shared tails), and on
shutdown stops taking new runs, flushes every buffer and hands runs over, in
that order. The shutdown begins with the signal itself (`broker.web.draining`):
new runs get 503 and open streams end at once, before the server waits for
connections to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from broker.errors import ConfigError
from broker.integrations.routes import router as integrations_router
from broker.store.database import create_engine
from broker.store.migrate import is_at_head
from broker.store.postgres import Store
from broker.web.draining import Drain
from broker.web.heap import startup_heap_frozen
from broker.web.http import (
    BodyLimitMiddleware,
    HandOffMiddleware,
    RequestIdMiddleware,
    UnicodeBodyMiddleware,
    error_response,
    install_error_handlers,
)
from broker.web.login import router as login_router
from broker.web.logs import redact_access_log
from broker.web.metrics import Metrics
from broker.web.settings import Settings
from broker.web.threads import router as threads_router
from broker.web.wirejson import WireJSONResponse
from broker.write.agent_client import AgentClient
from broker.write.batching import Backoff
from broker.write.producer import Producers
from broker.write.retention import Retention
from broker.write.routes import router as runs_router
from broker.write.streams import StreamManager
from broker.write.sweeper import Sweeper
from durable.routes import open_durable
from durable.routes import router as durable_router
from subscribe.hub import Hub
from subscribe.page import install_page
from subscribe.routes import router as subscribe_router

__all__ = ["create_app", "new_writer_id"]

log = structlog.get_logger(__name__)


def new_writer_id() -> str:
    """This process's identity as a run's writer: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def create_app(settings: Settings) -> FastAPI:
    """A broker app for `settings` (secrets filled, `database_url` set)."""
    settings = settings.with_secrets()
    if settings.database_url is None:
        raise ConfigError("create_app needs DATABASE_URL (the CLI starts the embedded one)")
    database_url = settings.database_url

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url)
        app.state.store = Store(engine, settings.keyring())
        try:
            async with contextlib.AsyncExitStack() as stack:
                drain: Drain = app.state.drain
                drain.install()
                stack.callback(drain.uninstall)
                # The write side and the read side register their parts here.
                _open_write_side(app, stack, settings)
                await open_durable(app, stack, app.state.store)
                # Read side: the LISTEN connection and the shared tails. Registered last,
                # so it stops first: viewers are closed and resume on another replica.
                # Its LISTEN connection also carries the cancel wake-ups to the write side.
                app.state.hub = await stack.enter_async_context(
                    Hub.for_settings(
                        app.state.store,
                        app.state.metrics,
                        settings,
                        on_cancel=app.state.streams.request_cancel,
                    )
                )
                # Events this process commits reach its own tails without a read.
                app.state.streams.on_stored = app.state.hub.publish_stored
                stack.callback(setattr, app.state.streams, "on_stored", None)
                stack.callback(drain.begin)  # a shutdown without a signal drains too
                # The started app's own objects out of the GC's full collections.
                stack.enter_context(startup_heap_frozen())
                yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="stream broker",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        default_response_class=WireJSONResponse,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.writer_id = new_writer_id()
    app.state.drain = Drain()
    # Retry schedule for an agent that refuses a run; tests swap in a faster one.
    app.state.agent_backoff = Backoff(base=0.2, cap=5.0, attempts=5)
    install_error_handlers(app)
    redact_access_log()  # whoever serves the app: no URL credential in the access log
    app.add_middleware(UnicodeBodyMiddleware)  # inside the body limit: reads a bounded body
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HandOffMiddleware)  # streams run here, once the app beneath returned
    app.add_middleware(RequestIdMiddleware)
    _add_health_routes(app)
    app.include_router(subscribe_router)
    app.include_router(runs_router)
    app.include_router(integrations_router)
    app.include_router(threads_router)
    app.include_router(login_router)
    install_page(app)

    app.include_router(durable_router)
    return app


def _open_write_side(app: FastAPI, stack: contextlib.AsyncExitStack, settings: Settings) -> None:
    """Start the flush loop, retention and the producers; `stack` closes them in reverse.

    Shutdown order (the reverse of registration): the sweeper stops, producers
    stop and no run is accepted (503), retention stops, the last buffers are
    flushed and the leases of runs still streaming are released, then the agent
    client closes. A drain (the signal) stops taking runs and claiming at once.
    """
    store: Store = app.state.store
    agent = AgentClient(
        settings.agent_url, settings.require(settings.local_secret, "BROKER_LOCAL_SECRET")
    )
    stack.push_async_callback(agent.aclose)
    streams = StreamManager(
        store,
        writer_id=app.state.writer_id,
        lease_s=settings.lease_s,
        flush_interval_s=settings.flush_interval_ms / 1000,
        run_buffer_max=settings.run_buffer_max,
        metrics=app.state.metrics,
        flush_max_events=settings.flush_max_events,
        flush_max_bytes=settings.flush_max_bytes,
    )
    streams.start()
    stack.push_async_callback(streams.close)
    retention = Retention(store, retention_s=settings.retention_s)
    retention.start()
    stack.push_async_callback(retention.close)
    producers = Producers(
        store,
        streams,
        agent,
        app.state.metrics,
        agent_backoff=app.state.agent_backoff,
        capability_secret=settings.require(settings.secret, "BROKER_SECRET"),
        capability_ttl_s=settings.capability_ttl_s,
        max_event_bytes=settings.max_event_bytes,
    )
    stack.push_async_callback(producers.close)
    sweeper = Sweeper(
        store,
        producers,
        writer_id=app.state.writer_id,
        lease_s=settings.lease_s,
        interval_s=settings.sweep_s,
    )
    sweeper.start()
    stack.push_async_callback(sweeper.close)
    drain: Drain = app.state.drain
    refusing = asyncio.create_task(_refuse_runs_when_draining(drain, producers))
    stack.callback(refusing.cancel)
    app.state.streams, app.state.retention, app.state.producers = streams, retention, producers
    app.state.sweeper = sweeper


async def _refuse_runs_when_draining(drain: Drain, producers: Producers) -> None:
    await drain.wait()
    producers.accepting = False
    log.info("draining", producers=producers.active)


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        store: Store = request.app.state.store
        try:
            async with store.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                at_head = await is_at_head(conn)
        except Exception as exc:
            log.warning("not_ready", error=str(exc))
            return error_response(503, "not_ready", "the database is unreachable")
        if not at_head:
            return error_response(503, "not_ready", "database migrations are not at head")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body = request.app.state.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
