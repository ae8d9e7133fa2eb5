"""Integrations: what agent tools may reach, and the callback that reaches them.

    POST /api/integrations                      bearer; register one (credentials sealed)
    GET  /api/integrations                      bearer; the caller's workspace's, no credentials
    POST /api/agents/integrations/{id}/query    x-local-secret + x-run-capability; run SQL

Credentials come in once and never go out: they are a `SecretStr` from the
moment the body is parsed (so no repr or log shows them), sealed by the
store, opened only to connect, and no answer or log line carries them. A
validation error names the field, never the value.

Registration connects once and applies the integration policy
(`broker/integrations/policy.py`, design 4.7); the callback applies it again
before every query, since a name may resolve elsewhere and a role may gain
powers after it was registered. Both answer, beyond their own errors:

    422 integration_refused     the policy forbids it (the reason never quotes the DSN)
    502 integration_unavailable the integration's database cannot be reached (one answer
                                for every kind of failure; the detail is in the log)

The query callback is for the agent service alone, and for one run at a
time: it needs the shared local secret (compared in constant time) and the
run capability the broker minted for the run (`broker.web.capability`); it
answers only while that run is streaming, and only for an integration of
that run's workspace (another workspace's is as unknown as a missing one).
A missing or wrong secret, a missing, forged or expired capability, or one
for a run no longer streaming is 401. It answers at most
BROKER_QUERY_MAX_ROWS rows and BROKER_QUERY_MAX_BYTES of JSON
(`truncated: true` past either), or one of:

    400 query_rejected          not a single read (write, several statements, no privilege)
    408 query_timeout           over BROKER_QUERY_TIMEOUT_S
    422 query_failed            syntax error, unknown table or column, bad cast...
    404 not_found               no such integration in the run's workspace

Every status is the error class's own (`broker/errors.py`).
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request

from broker.errors import (
    AuthError,
    BrokerError,
    CryptoError,
    IntegrationError,
    NotFound,
    QueryRejected,
)
from broker.integrations.policy import Policy
from broker.integrations.querying import check_integration, run_query
from broker.store.records import IntegrationRecord
from broker.web.auth import Principal
from broker.web.capability import CAPABILITY_HEADER, RunCapability, verify_capability
from broker.web.http import authenticate, get_settings, get_store, path_id
from broker.web.metrics import Metrics
from broker.web.wirejson import WireJSONResponse
from models.api import CreateIntegration, IntegrationList, IntegrationOut, QueryRequest
from models.ids import IntegrationId

__all__ = [
    "require_local_secret",
    "require_run_capability",
    "router",
]

log = structlog.get_logger(__name__)

router = APIRouter()

Caller = Annotated[Principal, Depends(authenticate)]


def _integration_out(record: IntegrationRecord) -> IntegrationOut:
    return IntegrationOut(id=str(record.integration_id), kind=record.kind, name=record.name)


def require_local_secret(request: Request) -> None:
    """Let only the agent service in: `x-local-secret` must equal `BROKER_LOCAL_SECRET`."""
    settings = get_settings(request)
    expected = settings.require(settings.local_secret, "BROKER_LOCAL_SECRET").encode()
    given = request.headers.get("x-local-secret", "").encode("latin-1")
    if not given or not hmac.compare_digest(given, expected):
        raise AuthError("missing or wrong x-local-secret")


async def require_run_capability(
    request: Request, _: Annotated[None, Depends(require_local_secret)]
) -> RunCapability:
    """The run the callback acts for: a valid `x-run-capability` of a run still streaming.

    `AuthError` (401) otherwise, the same for a run that finished as for one
    that never was: the capability is spent either way.
    """
    settings = get_settings(request)
    granted = verify_capability(
        settings.require(settings.secret, "BROKER_SECRET"),
        request.headers.get(CAPABILITY_HEADER, ""),
    )
    try:
        run = await get_store(request).get_run(granted.workspace_id, granted.run_id)
    except NotFound:
        run = None
    if run is None or run.status != "streaming":
        raise AuthError("the run capability's run is no longer streaming")
    structlog.contextvars.bind_contextvars(run_id=str(granted.run_id))
    return granted


RunScope = Annotated[RunCapability, Depends(require_run_capability)]


@router.post("/api/integrations", status_code=201, response_model=IntegrationOut)
async def create_integration(
    body: CreateIntegration, request: Request, principal: Caller
) -> IntegrationOut:
    dsn = body.credentials.dsn.get_secret_value()
    try:
        await check_integration(
            dsn,
            policy=await _policy(request, managed=False),
            timeout_s=get_settings(request).query_timeout_s,
        )
    except IntegrationError as exc:
        log.info(
            "integration_not_registered",
            code=exc.code,
            reason=str(exc),
            workspace_id=str(principal.workspace_id),
        )
        raise
    record = await get_store(request).create_integration(
        principal.workspace_id, body.kind, body.name, {"dsn": dsn}
    )
    log.info(
        "integration_created",
        integration_id=str(record.integration_id),
        workspace_id=str(record.workspace_id),
        kind=record.kind,
        name=record.name,
    )
    return _integration_out(record)


@router.get("/api/integrations", response_model=IntegrationList)
async def list_integrations(request: Request, principal: Caller) -> IntegrationList:
    records = await get_store(request).list_integrations(principal.workspace_id)
    return IntegrationList(integrations=[_integration_out(record) for record in records])


@router.post("/api/agents/integrations/{integration_id}/query")
async def query_integration(
    integration_id: str, body: QueryRequest, request: Request, scope: RunScope
) -> WireJSONResponse:
    settings = get_settings(request)
    metrics: Metrics = request.app.state.metrics
    bound = log.bind(integration_id=integration_id)
    record, credentials = await _credentials(request, scope, integration_id)
    started = time.perf_counter()
    try:
        if record.kind != "postgres":
            raise QueryRejected(f"integrations of kind {record.kind!r} cannot run SQL")
        # Only the broker's demo code seals `managed`; no API body can carry it.
        policy = await _policy(request, managed=credentials.get("managed") is True)
        result = await run_query(
            str(credentials.get("dsn", "")),
            body.sql,
            policy=policy,
            timeout_s=settings.query_timeout_s,
            max_rows=settings.query_max_rows,
            max_bytes=settings.query_max_bytes,
        )
    except IntegrationError as exc:
        elapsed = time.perf_counter() - started
        metrics.integration_queries.labels(outcome=exc.code).inc()
        metrics.integration_query_duration.observe(elapsed)
        bound.info(
            "integration_query_failed",
            code=exc.code,
            error=str(exc),
            sql_chars=len(body.sql),
            duration_ms=round(elapsed * 1000, 1),
        )
        raise
    elapsed = time.perf_counter() - started
    metrics.integration_queries.labels(outcome="ok").inc()
    metrics.integration_query_duration.observe(elapsed)
    bound.info(
        "integration_query",
        kind=record.kind,
        rows=len(result.rows),
        truncated=result.truncated,
        sql_chars=len(body.sql),
        duration_ms=round(elapsed * 1000, 1),
    )
    return WireJSONResponse(result.to_json())


async def _policy(request: Request, *, managed: bool) -> Policy:
    """The policy for this app: its allow list and its own server's identity (asked once)."""
    own: str | None = getattr(request.app.state, "server_identity", None)
    if own is None:
        own = await get_store(request).server_identity()
        request.app.state.server_identity = own
    return Policy(get_settings(request).allowlist(), own, managed)


async def _credentials(
    request: Request, scope: RunCapability, integration_id: str
) -> tuple[IntegrationRecord, dict[str, object]]:
    """The integration of the run's workspace and its opened credentials.

    A malformed id, or another workspace's integration, is just not found.
    """
    parsed = IntegrationId(path_id(integration_id, "integration"))
    try:
        return await get_store(request).integration_credentials(
            parsed, workspace_id=scope.workspace_id
        )
    except CryptoError as exc:
        log.error("integration_credentials_unreadable", integration_id=str(parsed), error=str(exc))
        raise BrokerError("the integration's credentials cannot be opened") from exc
