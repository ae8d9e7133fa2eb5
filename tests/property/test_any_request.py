"""Any request to any public route: never a 500, and nothing written unless it succeeded.

The routes are read from the app itself, so a route added later is fuzzed
too. Each example picks a route and sends it arbitrary header values (the
credentials, the content type, the cursor headers...) and an arbitrary body
(raw bytes, or JSON built from arbitrary text, lone surrogates included),
sometimes with real credentials, a real thread id and a real run capability
so that the input reaches past authentication. The broker is a real uvicorn
server; every table's rows are counted before and after each request.

Bodies never carry a `message` field: a run it started would write events in
the background and blur the row counts of the next example.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from broker.app import create_app
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.capability import mint_capability
from broker.web.settings import Settings
from tests.servers import serve

HEADER_NAMES = [
    "authorization",
    "cookie",
    "content-type",
    "accept",
    "x-local-secret",
    "x-run-capability",
    "last-event-id",
    "x-request-id",
    "origin",
]
FIELDS = ["title", "cursor", "sql", "kind", "name", "credentials", "dsn", "wait", "id"]


@dataclass
class Target:
    base_url: str
    store: Store
    routes: list[tuple[str, str]]
    valid: dict[str, str]
    thread_id: str


def _public_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers walked (FastAPI nests them)."""
    found: list[tuple[str, str]] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, Route) and route.methods:
            found.extend((method, route.path) for method in sorted(route.methods - {"HEAD"}))
    return found


def test_every_route_of_the_contract_is_fuzzed(settings: Settings) -> None:
    routes = set(_public_routes(create_app(settings)))
    assert {
        ("POST", "/api/threads"),
        ("POST", "/api/threads/{thread_id}/runs"),
        ("POST", "/api/runs/{run_id}/subscribe"),
        ("GET", "/api/runs/{run_id}/events"),
        ("GET", "/api/runs/{run_id}"),
        ("GET", "/api/threads/{thread_id}/messages"),
        ("POST", "/api/integrations"),
        ("GET", "/api/integrations"),
        ("POST", "/api/agents/integrations/{integration_id}/query"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    } <= routes


@pytest.fixture
async def target(settings: Settings, store: Store) -> AsyncIterator[Target]:
    app = create_app(settings.model_copy(update={"agent_url": "http://127.0.0.1:9"}))
    workspace = await store.ensure_workspace("acme")
    thread = await store.create_thread(workspace, "fuzzed")
    run = await store.create_run(thread, writer_id="elsewhere", lease_s=600)
    secret = settings.require(settings.secret, "BROKER_SECRET")
    valid = {
        "authorization": f"Bearer {mint_token(secret, workspace)}",
        "cookie": f"broker_session={mint_token(secret, workspace)}",
        "content-type": "application/json",
        "x-local-secret": settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        "x-run-capability": mint_capability(secret, run.run_id, workspace, ttl_s=600),
    }
    async with serve(app) as base_url:
        yield Target(base_url, store, _public_routes(app), valid, str(thread.thread_id))


def _header(target: Target, name: str, value: bytes) -> bytes:
    if value == b"VALID":
        return target.valid.get(name, "x").encode()
    if value.startswith(b"SHAPED"):
        return _PREFIXES.get(name, b"") + value.removeprefix(b"SHAPED")
    return value


async def _row_counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        tables = (
            await conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        return {
            table: (await conn.execute(sa.text(f'SELECT count(*) FROM "{table}"'))).scalar_one()
            for table in list(tables)
        }


# Header values: any bytes an HTTP/1.1 client can put on the wire (RFC 9110 field-value:
# visible ASCII, obs-text 0x80-0xFF, inner spaces and tabs; no other control byte).
_header_bytes = st.binary(max_size=80).map(
    lambda b: bytes(c for c in b if c == 0x09 or 0x20 <= c != 0x7F).strip(b" \t")
)
# Credential-shaped values (`a.b`, after the scheme a header needs), so that input
# gets past the first split and reaches the signature check.
_token_shaped = st.builds(lambda a, b: a + b"." + b, _header_bytes, _header_bytes)
_PREFIXES = {"authorization": b"Bearer ", "cookie": b"broker_session="}
_texts = st.text(max_size=40)  # arbitrary code points, lone surrogates included
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | _texts, children, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), _json_values, max_size=4).map(
        lambda v: json.dumps(v).encode()
    ),
)
_path_ids = st.one_of(st.just("THREAD"), st.uuids().map(str), st.text(min_size=1, max_size=30))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.integers(min_value=0),
    path_id=_path_ids,
    query=st.dictionaries(st.sampled_from(["cursor", "token", "code", "wait"]), _texts, max_size=2),
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES),
        st.one_of(st.just(b"VALID"), _header_bytes, _token_shaped.map(lambda t: b"SHAPED" + t)),
        max_size=5,
    ),
    body=_bodies,
)
async def test_any_request_to_any_route_is_never_a_500_and_writes_only_on_success(
    target: Target,
    route: int,
    path_id: str,
    query: dict[str, str],
    headers: dict[str, bytes],
    body: bytes,
) -> None:
    method, template = target.routes[route % len(target.routes)]
    ident = target.thread_id if path_id == "THREAD" else path_id
    path = template
    for name in ("{thread_id}", "{run_id}", "{integration_id}"):
        path = path.replace(name, quote(ident.encode("utf-8", "surrogatepass"), safe=""))
    sent = {name: _header(target, name, value) for name, value in headers.items()}
    params = {k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in query.items()}
    before = await _row_counts(target.store)
    async with (
        httpx.AsyncClient(base_url=target.base_url, timeout=10) as client,
        client.stream(
            method,
            path,
            params=params,
            headers=sent,
            content=body if method not in ("GET", "HEAD") else None,
        ) as answer,
    ):
        status = answer.status_code  # a stream that opened is an answer; its end is not awaited
        content_type = answer.headers.get("content-type", "")
        text = await answer.aread() if status >= 400 else b""
    assert status < 500, (method, path, sent, body, text)
    if status >= 400 and content_type.startswith("application/json"):
        error = json.loads(text)
        assert set(error) == {"error"} and {"code", "message"} <= set(error["error"])
    if status >= 300:
        assert await _row_counts(target.store) == before, (method, path, status)


# --- /ds/: the Durable Streams edge -----------------------------------------------------

_DS_HEADERS = [
    "stream-ttl",
    "stream-expires-at",
    "producer-id",
    "producer-epoch",
    "producer-seq",
    "stream-seq",
    "content-type",
    "stream-closed",
    "stream-forked-from",
    "stream-fork-offset",
    "stream-fork-sub-offset",
]
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode()),
    st.sampled_from([b"1000000000000", b"99999999999999999999", b"9" * 60, b"0", b"-1"]),
)
_instants = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat().encode()),
    st.sampled_from([b"9999-12-31T23:59:59-14:00", b"0001-01-01T00:00:00+14:00"]),
)
_offsets = st.one_of(
    st.builds(lambda a, b: f"{a}_{b}", st.integers(0, 2**70), st.integers(0, 2**70)),
    st.sampled_from(["-1", "now", "", "0000000000000000_0000000000000001"]),
    _texts,
)
# Path segments: any code point (NUL, controls and lone surrogates included), sent escaped.
_segments = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    segments=_segments,
    headers=st.dictionaries(
        st.sampled_from(_DS_HEADERS), st.one_of(_numbers, _instants, _header_bytes), max_size=4
    ),
    offset=_offsets,
    body=st.binary(max_size=40),
)
async def test_any_ds_request_is_never_a_500_nor_leaves_a_stream_that_answers_500(
    target: Target, segments: list[str], headers: dict[str, bytes], offset: str, body: bytes
) -> None:
    path = "/ds/" + "/".join(quote(s.encode("utf-8", "surrogatepass"), safe="") for s in segments)
    auth = {"authorization": target.valid["authorization"]}
    async with httpx.AsyncClient(base_url=target.base_url, timeout=10) as client:
        for method, sent, params in (
            ("PUT", headers, {}),
            ("POST", headers, {}),
            ("HEAD", {}, {}),
            ("GET", {}, {"offset": offset}),
            ("GET", {}, {}),
            ("DELETE", {}, {}),
        ):
            answer = await client.request(
                method,
                path,
                params=params,
                headers={**auth, **sent},
                content=body if method in ("PUT", "POST") else None,
            )
            assert answer.status_code < 500, (method, path, sent, params, answer.text)
            if answer.status_code >= 400 and method != "HEAD":
                error = answer.json()
                assert set(error) == {"error"} and {"code", "message"} <= set(error["error"])


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/ds/a/s7", {"stream-ttl": "1000000000000"}),
        ("/ds/a/s8", {"stream-ttl": "99999999999999999999"}),
        ("/ds/a/s9", {"stream-expires-at": "9999-12-31T23:59:59-14:00"}),
        ("/ds/a/s10", {"content-type": "text/" + "x" * 300}),
        ("/ds/a%00b", {}),
        ("/ds/a%1Fb", {}),
    ],
)
async def test_ds_bad_numbers_and_paths_are_refused_with_400(
    target: Target, path: str, headers: dict[str, str]
) -> None:
    auth = {"authorization": target.valid["authorization"]}
    async with httpx.AsyncClient(base_url=target.base_url, timeout=10) as client:
        created = await client.put(path, headers={**auth, **headers})
        assert created.status_code == 400, created.text
        assert created.json()["error"]["code"] == "bad_request"
        for method in ("GET", "POST", "DELETE"):
            later = await client.request(method, path, headers=auth, content=b"x")
            assert later.status_code in (400, 404), (method, later.text)


async def test_ds_producer_numbers_beyond_the_table_are_refused_with_400(target: Target) -> None:
    auth = {"authorization": target.valid["authorization"]}
    async with httpx.AsyncClient(base_url=target.base_url, timeout=10) as client:
        created = await client.put("/ds/p/one", headers={**auth, "content-type": "text/plain"})
        assert created.status_code == 201, created.text
        for epoch, seq in (("0", str(2**31)), (str(2**53), "0"), ("0", "9" * 40)):
            answer = await client.post(
                "/ds/p/one",
                headers={
                    **auth,
                    "content-type": "text/plain",
                    "producer-id": "p",
                    "producer-epoch": epoch,
                    "producer-seq": seq,
                },
                content=b"x",
            )
            assert answer.status_code == 400, (epoch, seq, answer.text)
        far = await client.get("/ds/p/one", headers=auth, params={"offset": f"0_{2**64}"})
        assert far.status_code == 400, far.text
