"""`LocalSecretMiddleware`: every call but the health check carries the broker's local secret.

A pure ASGI middleware rather than a route dependency, so the secret is
checked before anything else looks at the request: a caller without it learns
nothing, not even whether its JSON was malformed or its run exists. The
comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agents.schemas import ErrorBody

__all__ = ["SECRET_HEADER", "LocalSecretMiddleware", "secret_matches"]

SECRET_HEADER = "x-local-secret"


def secret_matches(provided: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing header never matches."""
    if provided is None:
        return False
    return hmac.compare_digest(provided.encode(), expected.encode())


class LocalSecretMiddleware:
    """Answers 401 `unauthorized` to HTTP calls without the right `x-local-secret`."""

    def __init__(self, app: ASGIApp, *, secret: str, exempt: Collection[str] = ()) -> None:
        self._app = app
        self._secret = secret
        self._exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self._app(scope, receive, send)
            return
        provided = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name.lower() == SECRET_HEADER.encode()
            ),
            None,
        )
        if not secret_matches(provided, self._secret):
            body = ErrorBody.of("unauthorized", f"missing or wrong {SECRET_HEADER} header")
            response = JSONResponse(body.model_dump(), status_code=401)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)
