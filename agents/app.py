"""The agent service's FastAPI application (design 4.4).

    POST /runs/stream              start a run, stream its events (SSE, ids from 1)
    GET  /runs/{run_id}/stream     re-attach: the events after `Last-Event-ID`
    POST /runs/{run_id}/cancel     202: set the run's cancellation token
    GET  /healthz                  liveness, no secret needed

A run lives in the registry, not in the request that started it: the
response only reads the run's buffer, so a client may go away and come back.
Errors are `{"error": {"code", "message"}}`. Shutdown (lifespan) cancels
every run in flight and waits for them, then closes the HTTP client if the
app made it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from langchain_core.language_models import BaseChatModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.status import HTTP_202_ACCEPTED

from agents.auth import LocalSecretMiddleware
from agents.callback import BrokerCallback
from agents.errors import RunInFlight, RunNotFound
from agents.providers import ModelFactory, default_model_factory
from agents.registry import RunRegistry
from agents.response import RunStreamResponse
from agents.runner import agent_events
from agents.schemas import ErrorBody, RunRequest
from agents.settings import AgentSettings
from agents.sse import parse_last_event_id

__all__ = ["ModelFactory", "create_app"]

_logger = structlog.get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation_error",
}


def create_app(
    settings: AgentSettings,
    *,
    model_factory: ModelFactory | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The agent service; `model_factory` and `http_client` are for tests to inject."""
    factory = model_factory or default_model_factory
    registry = RunRegistry(
        grace_s=settings.agent_detach_grace_s, buffer_max=settings.agent_run_buffer_max
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = http_client if http_client is not None else httpx.AsyncClient()
        app.state.http_client = client
        try:
            yield
        finally:
            await registry.aclose()
            if http_client is None:
                await client.aclose()

    app = FastAPI(title="agents", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = registry
    app.add_middleware(
        LocalSecretMiddleware, secret=settings.broker_local_secret, exempt={"/healthz"}
    )
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/runs/stream")
    async def start_run(body: RunRequest, request: Request) -> RunStreamResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        log = _logger.bind(run_id=body.run_id, request_id=request_id)
        callback = BrokerCallback(
            request.app.state.http_client,
            broker_url=settings.broker_url,
            secret=settings.broker_local_secret,
            request_id=request_id,
            timeout_s=settings.agent_tool_timeout_s,
            capability=body.capability,
        )

        def build_model() -> BaseChatModel:
            return factory(settings)

        run = registry.start(
            body.run_id,
            request_id,
            lambda token: agent_events(
                body, model_factory=build_model, callback=callback, token=token, log=log
            ),
        )
        run.renew_capability = callback.renew
        log.info(
            "run_started",
            thread_id=body.thread_id,
            history=len(body.history),
            integrations=len(body.integrations),
        )
        return RunStreamResponse(registry, run, after=0, keepalive_s=settings.agent_keepalive_s)

    @app.get("/runs/{run_id}/stream")
    async def reattach(run_id: str, request: Request) -> Response:
        try:
            after = parse_last_event_id(request.headers.get("last-event-id"))
        except ValueError as exc:
            return _error(422, "validation_error", f"Last-Event-ID: {exc}")
        run = registry.get(run_id)
        capability = request.headers.get("x-run-capability")
        if capability and run.renew_capability is not None:
            run.renew_capability(capability)
        run.log.info(
            "run_reattached",
            after=after,
            head=run.buffer.head,
            reattach_request_id=request.headers.get("x-request-id"),
        )
        return RunStreamResponse(registry, run, after=after, keepalive_s=settings.agent_keepalive_s)

    @app.post("/runs/{run_id}/cancel", status_code=HTTP_202_ACCEPTED)
    async def cancel(run_id: str) -> dict[str, str]:
        registry.cancel(run_id, by="agent")
        return {"run_id": run_id, "status": "cancelling"}

    return app


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(ErrorBody.of(code, message).model_dump(), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    async def run_not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, "run_not_found", str(exc))

    async def run_in_flight(request: Request, exc: Exception) -> JSONResponse:
        return _error(409, "run_in_flight", str(exc))

    async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return _error(422, "validation_error", _describe_validation(errors))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "internal error"
        return JSONResponse(
            ErrorBody.of(_STATUS_CODES.get(status, f"http_{status}"), str(detail)).model_dump(),
            status_code=status,
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(RunNotFound, run_not_found)
    app.add_exception_handler(RunInFlight, run_in_flight)
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _describe_validation(errors: Sequence[Any]) -> str:
    """`field: problem` for each error, the field as a dotted path inside the body."""
    parts: list[str] = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            parts.append(f"body: malformed JSON ({error.get('ctx', {}).get('error', 'invalid')})")
        else:
            parts.append(f"{'.'.join(loc) or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
