"""The page's server side: login links, the session cookie, the same-origin check,
the thread listing the page reads, and the page routes themselves."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from broker.app import create_app
from broker.errors import AuthError
from broker.store.postgres import Store
from broker.web.auth import COOKIE_NAME, mint_token, verify_token
from broker.web.login import LoginCodes
from broker.web.settings import Settings
from models.ids import ThreadId, WorkspaceId
from tests.servers import serve


@dataclass
class Broker:
    http: httpx.AsyncClient
    base: str
    workspace_id: WorkspaceId
    bearer: dict[str, str]


@pytest.fixture
async def broker(settings: Settings, store: Store) -> AsyncIterator[Broker]:
    workspace_id = await store.ensure_workspace("acme")
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    async with (
        serve(create_app(settings)) as base,
        httpx.AsyncClient(base_url=base, follow_redirects=False) as http,
    ):
        yield Broker(http, base, workspace_id, {"Authorization": f"Bearer {token}"})


async def _login(broker: Broker, store: Store) -> str:
    code = await LoginCodes(store).issue(broker.workspace_id)
    answer = await broker.http.get("/login", params={"code": code})
    assert answer.status_code == 303, answer.text
    broker.http.cookies.clear()  # each test sends the cookie explicitly, or not at all
    return f"{COOKIE_NAME}={answer.cookies[COOKIE_NAME]}"


# --- login links ----------------------------------------------------------------------


async def test_a_login_link_sets_a_strict_httponly_cookie_once(
    broker: Broker, store: Store, settings: Settings
) -> None:
    code = await LoginCodes(store).issue(broker.workspace_id)
    first = await broker.http.get("/login", params={"code": code})
    assert first.status_code == 303
    assert first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    principal = verify_token(
        settings.require(settings.secret, "BROKER_SECRET"), first.cookies[COOKIE_NAME]
    )
    assert principal.workspace_id == broker.workspace_id

    again = await broker.http.get("/login", params={"code": code})
    assert again.status_code == 401
    assert "text/html" in again.headers["content-type"]
    assert "set-cookie" not in again.headers


@pytest.mark.parametrize("code", ["", "nope", "x" * 150, "%00"])
async def test_unknown_or_malformed_codes_get_the_401_page(broker: Broker, code: str) -> None:
    answer = await broker.http.get("/login", params={"code": code})
    assert answer.status_code == 401
    assert "broker login-link" in answer.text


@pytest.mark.parametrize("length", [201, 500, 5000])
async def test_a_too_long_code_gets_the_401_page(broker: Broker, length: int) -> None:
    answer = await broker.http.get("/login", params={"code": "x" * length})
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert "broker login-link" in answer.text


async def test_an_expired_code_is_refused(broker: Broker, store: Store) -> None:
    codes = LoginCodes(store)
    code = await codes.issue(broker.workspace_id, ttl_s=-1)
    with pytest.raises(AuthError):
        await codes.redeem(code)


async def test_two_racing_redemptions_of_one_code_let_exactly_one_in(
    broker: Broker, store: Store
) -> None:
    codes = LoginCodes(store)
    code = await codes.issue(broker.workspace_id)
    results = await asyncio.gather(*(codes.redeem(code) for _ in range(5)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sum(isinstance(r, AuthError) for r in results) == 4


async def test_codes_are_stored_only_as_hashes(broker: Broker, store: Store) -> None:
    code = await LoginCodes(store).issue(broker.workspace_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT code_hash FROM login_codes"))).all()
    assert len(rows) == 1
    assert code.encode() not in bytes(rows[0].code_hash)


async def test_old_spent_codes_are_swept_when_a_new_one_is_issued(
    broker: Broker, store: Store
) -> None:
    codes = LoginCodes(store)
    await codes.issue(broker.workspace_id, ttl_s=-3 * 24 * 3600)
    await codes.issue(broker.workspace_id)
    async with store.engine.connect() as conn:
        count = (await conn.execute(sa.text("SELECT count(*) FROM login_codes"))).scalar_one()
    assert count == 1


def test_broker_login_link_prints_a_link_that_another_process_redeems(
    settings: Settings, database_url: str
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_SECRET": settings.require(settings.secret, "BROKER_SECRET"),
        "BROKER_DATA_DIR": str(settings.data_dir),
        "BROKER_URL": "http://127.0.0.1:8123",
    }
    env["BROKER_ENCRYPTION_KEYS"] = settings.require(
        settings.encryption_keys, "BROKER_ENCRYPTION_KEYS"
    )
    env["BROKER_LOCAL_SECRET"] = settings.require(settings.local_secret, "BROKER_LOCAL_SECRET")
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "login-link", "--workspace", "team"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:8123/login?code=")
    # `broker up --port 8124` next to a BROKER_URL naming 8123: --url says where the page is.
    elsewhere = subprocess.run(
        [sys.executable, "-m", "broker.cli", "login-link", "--url", "http://127.0.0.1:8124"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.strip().splitlines()[-1].startswith("http://127.0.0.1:8124/login?code=")
    for command in ("token", "login-link"):
        for bad in ("", "   ", "w" * 300, "a\x01b"):
            refused = subprocess.run(
                [sys.executable, "-m", "broker.cli", command, "--workspace", bad],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert refused.returncode == 2, (command, bad, refused.stderr)
            assert "--workspace" in refused.stderr and "Traceback" not in refused.stderr

    async def redeem() -> None:
        async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
            path = link.removeprefix("http://127.0.0.1:8123")
            assert (await http.get(path)).status_code == 303
            assert (await http.get(path)).status_code == 401

    asyncio.run(redeem())


# --- the cookie on the API, and the same-origin check -----------------------------------


async def test_the_cookie_authenticates_reads(broker: Broker, store: Store) -> None:
    cookie = await _login(broker, store)
    answer = await broker.http.get("/api/threads", headers={"Cookie": cookie})
    assert answer.status_code == 200
    assert answer.json() == {"threads": []}


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": "BASE"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({}, False),
    ],
)
async def test_cookie_authenticated_changes_must_be_same_origin(
    broker: Broker, store: Store, headers: dict[str, str], allowed: bool
) -> None:
    cookie = await _login(broker, store)
    headers = {k: broker.base if v == "BASE" else v for k, v in headers.items()}
    answer = await broker.http.post(
        "/api/threads", json={"title": "t"}, headers={**headers, "Cookie": cookie}
    )
    if allowed:
        assert answer.status_code == 201, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "cross_origin"


async def test_a_bearer_token_needs_no_origin(broker: Broker) -> None:
    answer = await broker.http.post(
        "/api/threads",
        json={"title": "t"},
        headers={**broker.bearer, "Origin": "http://elsewhere.example"},
    )
    assert answer.status_code == 201


# --- the threads the page lists -----------------------------------------------------------


async def test_threads_are_listed_newest_first_with_their_latest_run(
    broker: Broker, store: Store, settings: Settings
) -> None:
    ids = []
    for title in ("first", "second", "third"):
        created = await broker.http.post(
            "/api/threads", json={"title": title}, headers=broker.bearer
        )
        ids.append(created.json()["thread_id"])
    thread = await store.get_thread(broker.workspace_id, ThreadId(uuid.UUID(ids[1])))
    run = await store.create_run(thread, writer_id="test", lease_s=10)
    other = await store.ensure_workspace("other")
    await store.create_thread(other, "not yours")

    listed = (await broker.http.get("/api/threads", headers=broker.bearer)).json()["threads"]
    assert [t["title"] for t in listed] == ["third", "second", "first"]
    assert listed[1]["latest_run"]["run_id"] == str(run.run_id)
    assert listed[1]["latest_run"]["status"] == "streaming"
    assert listed[0]["latest_run"] is None

    one = (await broker.http.get(f"/api/threads/{ids[1]}", headers=broker.bearer)).json()
    assert one["title"] == "second"
    assert one["latest_run"]["run_id"] == str(run.run_id)

    limited = await broker.http.get("/api/threads?limit=1", headers=broker.bearer)
    assert [t["title"] for t in limited.json()["threads"]] == ["third"]


async def test_the_latest_run_is_the_newest_one(broker: Broker, store: Store) -> None:
    created = await broker.http.post("/api/threads", json={}, headers=broker.bearer)
    thread_id = created.json()["thread_id"]
    thread = await store.get_thread(broker.workspace_id, ThreadId(uuid.UUID(thread_id)))
    old = await store.create_run(thread, writer_id="test", lease_s=10)
    async with store.transaction() as conn:
        await conn.execute(
            sa.text("UPDATE runs SET status = 'completed', created_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) - timedelta(minutes=5), "id": old.run_id},
        )
    new = await store.create_run(thread, writer_id="test", lease_s=10)
    one = (await broker.http.get(f"/api/threads/{thread_id}", headers=broker.bearer)).json()
    assert one["latest_run"]["run_id"] == str(new.run_id)


@pytest.mark.parametrize("thread_id", ["not-a-uuid", str(uuid.uuid4()), "FOREIGN"])
async def test_an_unknown_or_foreign_thread_is_404(
    broker: Broker, store: Store, thread_id: str
) -> None:
    if thread_id == "FOREIGN":
        other = await store.ensure_workspace("other")
        thread_id = str((await store.create_thread(other, "theirs")).thread_id)
    answer = await broker.http.get(f"/api/threads/{thread_id}", headers=broker.bearer)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("limit", ["0", "201", "x"])
async def test_a_bad_limit_is_refused(broker: Broker, limit: str) -> None:
    answer = await broker.http.get(f"/api/threads?limit={limit}", headers=broker.bearer)
    assert answer.status_code == 422


async def test_listing_threads_needs_credentials(broker: Broker) -> None:
    assert (await broker.http.get("/api/threads")).status_code == 401


# --- the page routes ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/threads/{uuid.uuid4()}"])
async def test_the_page_asks_to_sign_in_without_a_session(broker: Broker, path: str) -> None:
    answer = await broker.http.get(path)
    assert answer.status_code == 401
    assert "broker login-link" in answer.text
    bad = await broker.http.get(path, headers={"Cookie": f"{COOKIE_NAME}=forged.token"})
    assert bad.status_code == 401


@pytest.mark.parametrize("path", ["/", f"/threads/{uuid.uuid4()}"])
async def test_the_page_is_served_with_a_strict_content_security_policy(
    broker: Broker, store: Store, path: str
) -> None:
    cookie = await _login(broker, store)
    answer = await broker.http.get(path, headers={"Cookie": cookie})
    assert answer.status_code == 200
    assert '<script type="module" src="/static/app.js">' in answer.text
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.js",
        "/static/client.js",
        "/static/sse.js",
        "/static/reducer.js",
        "/static/vendor/marked.esm.js",
        "/static/vendor/purify.es.mjs",
        "/static/events.schema.json",
    ],
)
async def test_the_client_modules_are_served_as_javascript(broker: Broker, path: str) -> None:
    answer = await broker.http.get(path)
    assert answer.status_code == 200
    kind = answer.headers["content-type"]
    assert kind.startswith("text/javascript") or kind.startswith("application/json"), kind
