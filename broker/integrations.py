"""Integrations: what agent tools may reach, and the callback that reaches them.

    POST /api/integrations                      bearer; register one (credentials sealed)
    GET  /api/integrations                      bearer; the caller's workspace's, no credentials
    POST /api/agents/integrations/{id}/query    x-local-secret; run SQL with the held credentials

Credentials come in once and never go out: they are a `SecretStr` from the
moment the body is parsed (so no repr or log shows them), sealed by the
store, opened only to connect, and no answer or log line carries them. A
validation error names the field, never the value.

The query callback is for the agent service alone (the shared local
secret, compared in constant time); it answers the rows, or one of:

    400 query_rejected          not a single read (write, several statements, no privilege)
    408 query_timeout           over BROKER_QUERY_TIMEOUT_S
    422 query_failed            syntax error, unknown table or column, bad cast...
    404 not_found               no such integration
    502 integration_unavailable the integration's database cannot be reached
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from broker.auth import Principal
from broker.errors import AuthError, CryptoError, IntegrationError, NotFound, QueryRejected
from broker.http import ApiError, authenticate, get_settings, get_store
from broker.metrics import Metrics
from broker.querying import run_query
from broker.store import IntegrationRecord
from broker.wirejson import WireJSONResponse
from models.ids import IntegrationId

__all__ = [
    "ERROR_STATUS",
    "CreateIntegration",
    "IntegrationOut",
    "PostgresCredentials",
    "QueryRequest",
    "require_local_secret",
    "router",
]

log = structlog.get_logger(__name__)

router = APIRouter()

Caller = Annotated[Principal, Depends(authenticate)]

ERROR_STATUS: dict[str, int] = {
    "query_rejected": 400,
    "query_timeout": 408,
    "query_failed": 422,
    "integration_unavailable": 502,
}
"""The HTTP status of each `IntegrationError` code."""

_DSN_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})


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


class IntegrationOut(BaseModel):
    id: str
    kind: str
    name: str

    @classmethod
    def of(cls, record: IntegrationRecord) -> IntegrationOut:
        return cls(id=str(record.integration_id), kind=record.kind, name=record.name)


class IntegrationList(BaseModel):
    integrations: list[IntegrationOut]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1, max_length=100_000)


def require_local_secret(request: Request) -> None:
    """Let only the agent service in: `x-local-secret` must equal `BROKER_LOCAL_SECRET`."""
    settings = get_settings(request)
    expected = settings.require(settings.local_secret, "BROKER_LOCAL_SECRET").encode()
    given = request.headers.get("x-local-secret", "").encode("latin-1")
    if not given or not hmac.compare_digest(given, expected):
        raise AuthError("missing or wrong x-local-secret")


@router.post("/api/integrations", status_code=201, response_model=IntegrationOut)
async def create_integration(
    body: CreateIntegration, request: Request, principal: Caller
) -> IntegrationOut:
    record = await get_store(request).create_integration(
        principal.workspace_id,
        body.kind,
        body.name,
        {"dsn": body.credentials.dsn.get_secret_value()},
    )
    log.info(
        "integration_created",
        integration_id=str(record.integration_id),
        workspace_id=str(record.workspace_id),
        kind=record.kind,
        name=record.name,
    )
    return IntegrationOut.of(record)


@router.get("/api/integrations", response_model=IntegrationList)
async def list_integrations(request: Request, principal: Caller) -> IntegrationList:
    records = await get_store(request).list_integrations(principal.workspace_id)
    return IntegrationList(integrations=[IntegrationOut.of(record) for record in records])


@router.post(
    "/api/agents/integrations/{integration_id}/query",
    dependencies=[Depends(require_local_secret)],
)
async def query_integration(
    integration_id: str, body: QueryRequest, request: Request
) -> WireJSONResponse:
    settings = get_settings(request)
    metrics: Metrics = request.app.state.metrics
    bound = log.bind(integration_id=integration_id)
    record, credentials = await _credentials(request, integration_id)
    started = time.perf_counter()
    try:
        if record.kind != "postgres":
            raise QueryRejected(f"integrations of kind {record.kind!r} cannot run SQL")
        result = await run_query(
            str(credentials.get("dsn", "")),
            body.sql,
            timeout_s=settings.query_timeout_s,
            max_rows=settings.query_max_rows,
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
        raise ApiError(ERROR_STATUS.get(exc.code, 400), exc.code, str(exc)) from exc
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


async def _credentials(
    request: Request, integration_id: str
) -> tuple[IntegrationRecord, dict[str, object]]:
    """The integration and its opened credentials; a malformed id is just not found."""
    try:
        parsed = IntegrationId(uuid.UUID(integration_id))
    except ValueError as exc:
        raise NotFound(f"integration {integration_id[:64]!r} not found") from exc
    try:
        return await get_store(request).integration_credentials(parsed)
    except CryptoError as exc:
        log.error("integration_credentials_unreadable", integration_id=str(parsed), error=str(exc))
        raise ApiError(
            500, "internal_error", "the integration's credentials cannot be opened"
        ) from exc
