"""`BrokerCallback`: the agent's one way back to the broker, the integration-query callback.

`POST {BROKER_URL}/api/agents/integrations/{id}/query` with the local secret,
the run's capability (`x-run-capability`, the opaque token the broker put in
the run request; a re-attaching broker may renew it) and the run's request
id, body `{"sql"}` → `{"columns", "rows", "truncated"}`.
The broker holds the integration's credentials and runs the query; the agent
only ever sees rows. Every failure (an error status, a refused connection, a
timeout, an answer not in the contract) is translated here into a
`CallbackError`, which the tool turns into an error `tool_result`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from agents.errors import CallbackRejected, CallbackUnreachable

__all__ = ["BrokerCallback", "QueryResult"]


class QueryResult(BaseModel):
    """What an integration query returned (at most the broker's row limit)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


class BrokerCallback:
    """Calls the broker on behalf of one run (its request id travels on every call)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        broker_url: str,
        secret: str,
        request_id: str,
        timeout_s: float,
        capability: str = "",
    ) -> None:
        self._client = client
        self._broker_url = broker_url.rstrip("/")
        self._headers = {"x-local-secret": secret, "X-Request-ID": request_id}
        self._timeout_s = timeout_s
        self.renew(capability)

    def renew(self, capability: str) -> None:
        """Send `capability` from now on (a re-attaching broker minted a fresh one)."""
        if capability:
            self._headers["x-run-capability"] = capability
        else:
            self._headers.pop("x-run-capability", None)

    async def query(self, integration_id: str, sql: str) -> QueryResult:
        """Run `sql` on the integration through the broker."""
        url = f"{self._broker_url}/api/agents/integrations/{quote(integration_id, safe='')}/query"
        try:
            response = await self._client.post(
                url, json={"sql": sql}, headers=self._headers, timeout=self._timeout_s
            )
        except httpx.TimeoutException as exc:
            raise CallbackUnreachable(
                "timeout", f"the broker did not answer within {self._timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise CallbackUnreachable("unreachable", f"cannot reach the broker: {exc}") from exc
        if response.status_code >= 400:
            code, message = _error_of(response)
            raise CallbackRejected(response.status_code, code, message)
        try:
            return QueryResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise CallbackUnreachable(
                "bad_response", f"the broker's answer is not a query result: {exc.errors()[0]}"
            ) from exc


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """`(code, message)` of an error answer, tolerating bodies outside the contract."""
    fallback = (f"http_{response.status_code}", response.text[:200] or response.reason_phrase)
    try:
        body = response.json()
    except ValueError:
        return fallback
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"], str(error.get("message", ""))
    return fallback
