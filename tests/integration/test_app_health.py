"""Health, readiness and metrics of a real broker app on a real database."""

from __future__ import annotations

import re

import httpx

from broker.app import create_app
from broker.web.settings import Settings
from tests.database import TestDatabases
from tests.servers import serve


async def test_ready_when_migrated_and_reachable(settings: Settings) -> None:
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        metrics = await client.get("/metrics")
        assert "broker_events_flushed_total" in metrics.text
        assert ready.headers["x-request-id"]
        echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        longest = "a" * 128
        kept = await client.get("/healthz", headers={"X-Request-ID": longest})
        assert kept.headers["x-request-id"] == longest
        for odd in ("a" * 129, "x" * 8000, "a b", "id\xe9", "<script>"):
            replaced = await client.get("/healthz", headers={"X-Request-ID": odd.encode("latin-1")})
            fresh = replaced.headers["x-request-id"]
            assert fresh != odd and re.fullmatch(r"[0-9a-f]{32}", fresh), (odd, fresh)


async def test_not_ready_before_migrations(settings: Settings, databases: TestDatabases) -> None:
    empty = await databases.create_empty()
    try:
        app = create_app(settings.model_copy(update={"database_url": empty}))
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "not_ready"
    finally:
        await databases.drop(empty)


async def test_unknown_route_answers_in_the_error_shape(settings: Settings) -> None:
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await client.get("/nope")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
