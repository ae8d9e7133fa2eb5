"""The agent service's HTTP API (design 4.4) as the broker calls it: one narrow interface.

Start a run's stream, re-attach to it after `Last-Event-ID`, cancel it. The
body of a stream comes out as raw bytes for `broker.web.sse` to parse; httpx
stays in this module, and its errors are translated where they enter:

    AgentError (BrokerError)
    ├── AgentUnavailable     refused, unreachable, or 5xx/429 before the stream began:
    │                        worth retrying
    ├── AgentConflict        409: the agent already runs this run; re-attach instead
    ├── AgentRejected        any other non-2xx: retrying would not help
    └── AgentStreamBroken    the body broke off (reset, timeout, bad chunking) mid-stream

Every call carries `x-local-secret` and the broker request's `X-Request-ID`.
The connection pool is unbounded because each streaming run holds one
connection for its whole life: a bounded pool would queue run 101 behind
run 1. The read timeout is long because a quiet agent is normal (it sends
keepalive comments); a dead one is caught by it eventually.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from broker.errors import (
    AgentConflict,
    AgentRejected,
    AgentStreamBroken,
    AgentUnavailable,
)
from broker.web.capability import CAPABILITY_HEADER
from models.agent_api import RunRequest
from models.ids import RunId

__all__ = [
    "AgentClient",
]

_SECRET_HEADER = "x-local-secret"
_RETRYABLE_STATUSES = frozenset({429})


class AgentClient:
    """Calls to one agent service; owns its HTTP client unless one is given."""

    def __init__(
        self,
        base_url: str,
        local_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._secret = local_secret
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def stream_run(
        self, request: RunRequest, *, request_id: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """`POST /runs/stream`: the run's SSE body, as bytes."""
        return self._stream(
            "POST", "/runs/stream", request_id=request_id, json=request.model_dump(mode="json")
        )

    def reattach(
        self,
        run_id: RunId,
        *,
        last_event_id: str | None,
        request_id: str,
        capability: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """`GET /runs/{run_id}/stream`: the run's events after `last_event_id`.

        `capability`, a freshly minted run capability, replaces the one the run's
        tools were started with (`x-run-capability`).
        """
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        if capability:
            headers[CAPABILITY_HEADER] = capability
        return self._stream("GET", f"/runs/{run_id}/stream", request_id=request_id, headers=headers)

    async def cancel(self, run_id: RunId, *, request_id: str) -> None:
        """`POST /runs/{run_id}/cancel`; a run the agent does not know is not an error."""
        try:
            response = await self._http.post(
                f"{self._base}/runs/{run_id}/cancel", headers=self._headers(request_id)
            )
        except httpx.TransportError as exc:
            raise AgentUnavailable(f"agent cancel failed: {exc!r}") from exc
        if response.status_code != 404:
            _raise_for_status(response)

    def _headers(self, request_id: str) -> dict[str, str]:
        return {_SECRET_HEADER: self._secret, "X-Request-ID": request_id}

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        *,
        request_id: str,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        request = self._http.build_request(
            method,
            self._base + path,
            json=json,
            headers={**self._headers(request_id), "Accept": "text/event-stream", **(headers or {})},
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise AgentUnavailable(f"agent unreachable: {exc!r}") from exc
        try:
            if not response.is_success:
                with contextlib.suppress(httpx.TransportError):
                    await response.aread()
                _raise_for_status(response)
            yield _body(response)
        finally:
            await response.aclose()


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx.TransportError as exc:
        raise AgentStreamBroken(f"agent stream broke off: {exc!r}") from exc


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if response.is_success:
        return
    detail = f"agent answered {status}: {_excerpt(response)}"
    if status >= 500 or status in _RETRYABLE_STATUSES:
        raise AgentUnavailable(detail)
    if status == 409:
        raise AgentConflict(detail)
    raise AgentRejected(detail)


def _excerpt(response: httpx.Response) -> str:
    try:
        return response.text[:200]
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""
