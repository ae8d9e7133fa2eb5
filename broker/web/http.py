"""HTTP conventions of the public contract (design section 4).

Errors are always `{"error": {"code", "message"}}` with a fitting status.
Every `BrokerError` carries its code and status (the table in
`broker.errors`), and one handler answers them all; FastAPI's own
validation errors and unknown routes are put in the same shape where they
enter, so every request-parsing failure has one answer:

    400 invalid_json       a body that is not JSON
    413 payload_too_large  a body over the limit, declared or streamed (chunked)
    422 validation_error   JSON, but not the schema, or a string that is not
                           valid Unicode (a lone surrogate escape)

Every request gets an `X-Request-ID` (the caller's, or a new one),
bound into the logs and sent back. Bodies over the limit are refused with
413 before they are read into memory. A response that lasts as long as its
connection is handed off (`HandOffMiddleware`): it runs once the routing and
the middlewares beneath have returned, so it does not hold their frames.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.errors import AuthError, BrokerError, CrossOrigin, NotFound, PayloadTooLarge
from broker.store.postgres import Store
from broker.web.auth import COOKIE_NAME, Principal, verify_token
from broker.web.origin import SAFE_METHODS, is_same_origin
from broker.web.settings import Settings
from broker.web.wirejson import WireJSONResponse

__all__ = [
    "HAND_OFF",
    "BodyLimitMiddleware",
    "HandOffMiddleware",
    "RequestIdMiddleware",
    "UnicodeBodyMiddleware",
    "authenticate",
    "error_answer",
    "error_response",
    "get_settings",
    "get_store",
    "install_error_handlers",
    "path_id",
    "request_id_of",
]

log = structlog.get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    503: "not_ready",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """`{"error": {"code", "message", ...extra}}` with `status`, U+2028 escaped."""
    body = {"error": {"code": code, "message": message, **extra}}
    return WireJSONResponse(body, status_code=status)


def error_answer(exc: BrokerError) -> JSONResponse:
    """The contract's answer to a broker error, by its row of the error table."""
    if exc.status >= 500:
        log.warning("request_failed", code=exc.code, error=str(exc)[:500])
    response = error_response(exc.status, exc.code, exc.public_message or str(exc), **exc.extra)
    response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Map every error that reaches the edge onto the contract's error shape."""

    @app.exception_handler(BrokerError)
    async def _broker_error(request: Request, exc: BrokerError) -> JSONResponse:
        return error_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            detail = first.get("ctx", {}).get("error", "invalid")
            return error_response(400, "invalid_json", f"the body is not JSON: {detail}")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "")
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in errors]
        return error_response(422, "validation_error", message or "invalid request", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
"""A caller's `X-Request-ID` kept as given: at most 128 of these characters."""


class RequestIdMiddleware:
    """Give every request an `X-Request-ID`, bind it into logs, echo it back.

    The caller's id is kept when it is 1-128 characters of `A-Za-z0-9._:-`;
    any other (too long, odd bytes) is replaced by a fresh one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = given.decode() if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        # Tokens, not `bound_contextvars`: its generator would be kept for a stream's life.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


HAND_OFF = "broker.hand_off"
"""Scope key of `HandOffMiddleware`: a list a response may append itself to."""


class HandOffMiddleware:
    """Run a long response after the app beneath has returned, not inside it.

    A stream lasts as long as its connection; run where it is made, it keeps every
    frame beneath this one alive for that long: the routing, FastAPI's request and
    its exit stacks, the middlewares inside this one (about a third of an idle SSE
    viewer's memory). A response that may take this path (`RacingStreamResponse`)
    appends itself to `scope[HAND_OFF]` and returns without sending anything; once
    the app has returned, this calls the response here (with the scope as it came:
    the app had a copy). It sits inside `RequestIdMiddleware`, so the request id is still
    bound and still sent. The app's exception handlers no longer see the response's
    errors: it answers the contract's errors itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handed: list[ASGIApp] = []
        # The app's own copy: what it adds (the route, FastAPI's exit stacks) goes with it.
        await self.app({**scope, HAND_OFF: handed}, receive, send)
        if handed:
            await handed.pop()(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"request body over {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


def path_id(raw: str, what: str) -> uuid.UUID:
    """A path's id; anything that is not a UUID is just not found (`NotFound`, 404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} '{raw[:64]}' not found") from None


class UnicodeBodyMiddleware:
    """Refuse, with 422, a JSON body holding a string that is not valid Unicode.

    JSON may escape a lone surrogate (`"\\ud800"`) and Python decodes it into a
    `str` that no UTF-8 encoder, database or log line accepts: every route would
    fail on it later, as a 500. The body (already bounded by `BodyLimitMiddleware`)
    is read here once and replayed to the app; only a body that may hold a
    surrogate at all (an escape `\\uD800`-`\\uDFFF`, or the raw bytes) is parsed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except BrokerError as exc:  # PayloadTooLarge from BodyLimitMiddleware
            await error_answer(exc)(scope, receive, send)
            return
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if _holds_lone_surrogate(body):
            response = error_response(
                422, "validation_error", "body: a string is not valid Unicode (lone surrogate)"
            )
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


_SURROGATE_HINT = re.compile(rb"\\[uU][dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _holds_lone_surrogate(body: bytes) -> bool:
    if not _SURROGATE_HINT.search(body):
        return False
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: the route answers that itself
    stack: list[Any] = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or uuid.uuid4().hex


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def authenticate(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer` or the page's session cookie.

    A cookie-authenticated request that may change state (not GET/HEAD/OPTIONS)
    must also pass the same-origin check of `broker.web.origin`, else 403 `cross_origin`.
    """
    settings = get_settings(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if header and scheme.lower() != "bearer":
        raise AuthError("use the Bearer scheme")
    if not token:
        token = request.cookies.get(COOKIE_NAME, "")
        if token and request.method not in SAFE_METHODS and not is_same_origin(request):
            raise CrossOrigin("a cookie-authenticated change must come from the page")
    if not token:
        raise AuthError("missing credentials")
    return verify_token(settings.require(settings.secret, "BROKER_SECRET"), token)
