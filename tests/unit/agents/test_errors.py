"""The terminal `error` event names what failed, preferring the API's own error type."""

from __future__ import annotations

import anthropic
import httpx2
import pytest
from langgraph.errors import GraphRecursionError

from agents.errors import error_message_of, error_type_of

_REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def _status_error(status: int, body: object) -> anthropic.APIStatusError:
    response = httpx2.Response(status, request=_REQUEST)
    return anthropic.APIStatusError(f"Error code: {status}", response=response, body=body)


OVERLOADED_BODY = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_the_body_error_type_wins_even_on_a_200_stream() -> None:
    exc = _status_error(200, OVERLOADED_BODY)
    assert error_type_of(exc) == "overloaded_error"
    assert error_message_of(exc) == "Overloaded"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (529, "overloaded_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
        (401, "authentication_error"),
        (400, "invalid_request_error"),
    ],
)
def test_without_a_typed_body_the_status_names_the_error(status: int, error_type: str) -> None:
    exc = _status_error(status, "upstream said no")
    assert error_type_of(exc) == error_type
    assert error_message_of(exc) == f"Error code: {status}"


def test_connection_and_timeout_errors_are_told_apart() -> None:
    assert error_type_of(anthropic.APIConnectionError(request=_REQUEST)) == "api_connection_error"
    assert error_type_of(anthropic.APITimeoutError(request=_REQUEST)) == "timeout_error"


def test_runaway_graph_and_anything_else() -> None:
    assert error_type_of(GraphRecursionError("too many steps")) == "recursion_limit"
    assert error_type_of(ValueError("bug")) == "internal_error"
    assert error_message_of(ValueError("bug")) == "bug"
    assert error_message_of(RuntimeError()) == "RuntimeError"
