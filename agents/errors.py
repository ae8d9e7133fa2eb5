"""The agent service's exceptions, one tree rooted at `AgentError`.

    AgentError
    ├── RunNotFound          no in-flight run with that id (HTTP 404)
    ├── RunInFlight          a run with that id is already streaming (HTTP 409)
    ├── RunCancelled         raised inside a run when its token is set
    └── CallbackError        the broker's integration-query callback failed
        ├── CallbackRejected     the broker answered 4xx/5xx
        └── CallbackUnreachable  connection refused, timeout, or a malformed answer

httpx errors are translated into `CallbackError`s where they enter
(`callback.py`). Errors from the model (Anthropic SDK, LangChain, LangGraph)
are not wrapped: `error_type_of` names them for the terminal `error` event,
because that name is all the broker and the viewer need.
"""

from __future__ import annotations

from typing import Any

import anthropic
from langgraph.errors import GraphRecursionError

__all__ = [
    "AgentError",
    "CallbackError",
    "CallbackRejected",
    "CallbackUnreachable",
    "RunCancelled",
    "RunInFlight",
    "RunNotFound",
    "error_message_of",
    "error_type_of",
]


class AgentError(Exception):
    """Base of every error the agent service raises on purpose."""


class RunNotFound(AgentError):
    """No in-flight run has this id (never started, finished and delivered, or expired)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no in-flight run {run_id!r}")
        self.run_id = run_id


class RunInFlight(AgentError):
    """A run with this id is already in flight."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} is already in flight")
        self.run_id = run_id


class RunCancelled(AgentError):
    """The run's cancellation token was set; raised at a tool boundary or model chunk."""

    def __init__(self, by: str) -> None:
        super().__init__(f"run cancelled by {by}")
        self.by = by


class CallbackError(AgentError):
    """The broker's integration-query callback failed; `code` is short and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CallbackRejected(CallbackError):
    """The broker answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


class CallbackUnreachable(CallbackError):
    """The broker could not be reached in time, or its answer was not the contract's."""


# HTTP statuses of the Anthropic API, for errors that carry a status but no typed body.
_STATUS_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_type_of(exc: BaseException) -> str:
    """The `error_type` of the terminal `error` event for an exception raised by a run.

    The Anthropic API names its errors (`overloaded_error`, `api_error`, ...) in
    the body of a failed response and of an in-stream `error` event; that name
    wins. Otherwise the HTTP status, then the kind of failure, then
    `internal_error` for anything unexpected (a bug of ours).
    """
    body_type = _body_error_type(getattr(exc, "body", None))
    if body_type is not None:
        return body_type
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status in _STATUS_ERROR_TYPES:
            return _STATUS_ERROR_TYPES[status]
        if status >= 500:
            return "api_error"
    # APITimeoutError subclasses APIConnectionError, so it is checked first.
    if isinstance(exc, anthropic.APITimeoutError):
        return "timeout_error"
    if isinstance(exc, anthropic.APIConnectionError):
        return "api_connection_error"
    if isinstance(exc, GraphRecursionError):
        return "recursion_limit"
    return "internal_error"


def error_message_of(exc: BaseException) -> str:
    """The `error` text of the terminal `error` event: the API's own message when it sent one.

    The SDK's `str()` of an in-stream error is the repr of the whole body;
    the body's `error.message` is what a person wants to read.
    """
    message = _body_error_field(getattr(exc, "body", None), "message")
    return message or str(exc) or type(exc).__name__


def _body_error_type(body: Any) -> str | None:
    """`error.type` of an Anthropic error body `{"type": "error", "error": {"type", ...}}`."""
    return _body_error_field(body, "type")


def _body_error_field(body: Any, name: str) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get(name), str) and error[name]:
        return str(error[name])
    return None
