"""The one error table: every broker error answers with its own code and status."""

from __future__ import annotations

import json

import pytest

import subscribe.errors
from broker import errors
from broker.web.http import error_answer


def _classes() -> list[type[errors.BrokerError]]:
    found = [errors.BrokerError]
    for module in (errors, subscribe.errors):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, errors.BrokerError):
                found.append(value)
    return sorted(set(found), key=lambda cls: cls.__name__)


def _body(exc: errors.BrokerError) -> tuple[int, dict[str, str], dict[str, str]]:
    response = error_answer(exc)
    return response.status_code, json.loads(bytes(response.body))["error"], dict(response.headers)


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_answers_with_its_code_and_status(
    cls: type[errors.BrokerError],
) -> None:
    assert cls.code and cls.code == cls.code.lower() and " " not in cls.code
    assert 400 <= cls.status <= 599
    status, body, _ = _body(cls("something specific"))
    assert status == cls.status
    assert body["code"] == cls.code
    assert body["message"] == (cls.public_message or "something specific")


def test_the_table_of_the_contract() -> None:
    table = {cls.__name__: (cls.code, cls.status) for cls in _classes()}
    assert table["NotFound"] == ("not_found", 404)
    assert table["Conflict"] == ("conflict", 409)
    assert table["AuthError"] == ("unauthorized", 401)
    assert table["DatabaseUnavailable"] == ("database_unavailable", 503)
    assert table["PayloadTooLarge"] == ("payload_too_large", 413)
    assert table["ShuttingDown"] == ("shutting_down", 503)
    assert table["InvalidCursor"] == ("invalid_cursor", 400)
    assert table["NotAcceptable"] == ("not_acceptable", 406)
    assert table["QueryRejected"] == ("query_rejected", 400)
    assert table["QueryTimeout"] == ("query_timeout", 408)
    assert table["QueryFailed"] == ("query_failed", 422)
    assert table["IntegrationUnavailable"] == ("integration_unavailable", 502)
    assert table["RunInProgress"] == ("run_in_progress", 409)
    assert table["Unstorable"] == ("validation_error", 422)
    assert table["CrossOrigin"] == ("cross_origin", 403)


def test_run_in_progress_names_the_running_run_in_the_body() -> None:
    status, body, _ = _body(errors.RunInProgress("thread t is busy", run_id="r-1"))
    assert (status, body["code"], body["run_id"]) == (409, "run_in_progress", "r-1")
    _, unknown, _ = _body(errors.RunInProgress("thread t is busy"))
    assert unknown["run_id"] is None


def test_internal_errors_do_not_answer_their_own_text() -> None:
    for exc in (
        errors.DecryptionError("tag mismatch for key k1 on row 42"),
        errors.ConfigError("BROKER_SECRET=hunter2 refused"),
        errors.DatabaseUnavailable("connection to 10.0.0.5:5432 refused"),
    ):
        _, body, _ = _body(exc)
        assert str(exc) not in body["message"]


def test_an_auth_error_asks_for_a_bearer_token() -> None:
    status, body, headers = _body(errors.AuthError("expired"))
    assert (status, body["code"], headers["www-authenticate"]) == (401, "unauthorized", "Bearer")
