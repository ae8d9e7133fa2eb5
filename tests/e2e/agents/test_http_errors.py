"""Bad calls get the contract's error bodies, and the secret is checked before anything else."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from agents.app import create_app
from models.agent_api import agent_instance
from tests.e2e.agents.harness import AUTH, agent_settings, run_body
from tests.servers import serve


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # One server for the module: these calls never start a run that outlives its test.
    app = create_app(agent_settings())
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        yield client


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


async def test_healthz_needs_no_secret_and_says_who_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    secret = agent_settings().broker_local_secret
    # The identity `broker up` checks: derived from the secret, never the secret itself.
    assert body == {"status": "ok", "instance": agent_instance(secret), "pid": os.getpid()}
    assert secret not in response.text
    assert agent_instance(secret) != agent_instance(secret + "x")


@pytest.mark.parametrize("headers", [{}, {"x-local-secret": "wrong"}, {"x-local-secret": ""}])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/runs/stream"), ("GET", "/runs/r1/stream"), ("POST", "/runs/r1/cancel")],
)
async def test_no_or_wrong_secret_is_401(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, json=run_body("hi"), headers=headers)
    status, code, _ = _error(response)
    assert (status, code) == (401, "unauthorized")


async def test_the_secret_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/runs/stream", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert _error(response)[:2] == (401, "unauthorized")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/runs/stream",
        content=b'{"run_id": "r1", ',
        headers={**AUTH, "content-type": "application/json"},
    )
    status, code, message = _error(response)
    assert (status, code) == (422, "validation_error")
    assert "malformed JSON" in message


@pytest.mark.parametrize("message", ["", "   "])
async def test_an_empty_message_is_422_naming_the_field(
    client: httpx.AsyncClient, message: str
) -> None:
    response = await client.post("/runs/stream", json=run_body(message), headers=AUTH)
    status, code, text = _error(response)
    assert (status, code) == (422, "validation_error")
    assert text.startswith("new_user_message:")


async def test_a_missing_field_is_422_naming_it(client: httpx.AsyncClient) -> None:
    body = run_body("hi")
    del body["run_id"]
    status, code, text = _error(await client.post("/runs/stream", json=body, headers=AUTH))
    assert (status, code) == (422, "validation_error")
    assert text == "run_id: Field required"


async def test_a_bad_history_role_is_422_naming_the_path(client: httpx.AsyncClient) -> None:
    body = run_body("hi", history=[{"role": "robot", "content": "beep"}])
    status, _, text = _error(await client.post("/runs/stream", json=body, headers=AUTH))
    assert status == 422 and text.startswith("history.0.role:")


async def test_a_bad_last_event_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/runs/r1/stream", headers={**AUTH, "Last-Event-ID": "x"})
    status, code, text = _error(response)
    assert (status, code) == (422, "validation_error") and text.startswith("Last-Event-ID")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/runs/unknown/stream"), ("POST", "/runs/unknown/cancel")]
)
async def test_an_unknown_run_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, headers={**AUTH, "Last-Event-ID": "3"})
    status, code, _ = _error(response)
    assert (status, code) == (404, "run_not_found")


async def test_an_unknown_route_answers_in_the_error_format(client: httpx.AsyncClient) -> None:
    assert _error(await client.get("/nope", headers=AUTH))[:2] == (404, "not_found")
