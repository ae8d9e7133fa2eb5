"""The agents' query callback on a real broker, a real demo database and real refusals."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
import pytest
import structlog
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from broker.app import create_app
from broker.integrations.demo import ensure_demo_integration
from broker.store.postgres import Store
from broker.store.records import IntegrationRecord
from broker.web.auth import mint_token
from broker.web.capability import mint_capability
from broker.web.settings import Settings
from models.ids import WorkspaceId
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import TABLES, drop_demo, table_counts
from tests.servers import serve
from tests.tenant_server import TenantServer

MAX_ROWS = 50
FAKE_PASSWORD = "unreachable-Pa55word-nobody-may-see"


@dataclass(frozen=True)
class Demo:
    database: str
    role: str


@dataclass
class Broker:
    http: httpx.AsyncClient
    settings: Settings
    store: Store
    workspace_id: WorkspaceId
    demo: IntegrationRecord
    demo_password: str
    capability: str

    @contextlib.asynccontextmanager
    async def with_settings(self, **update: Any) -> AsyncIterator[Broker]:
        """The same broker's database and demo, served by an app with other settings."""
        settings = self.settings.model_copy(update=update)
        async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
            yield Broker(
                http,
                settings,
                self.store,
                self.workspace_id,
                self.demo,
                self.demo_password,
                self.capability,
            )

    @property
    def secret(self) -> dict[str, str]:
        """What the agent sends: the local secret and a streaming run's capability."""
        return {
            "x-local-secret": self.settings.require(self.settings.local_secret, "local"),
            "x-run-capability": self.capability,
        }

    async def query(self, integration_id: object, sql: str, **headers: str) -> httpx.Response:
        return await self.http.post(
            f"/api/agents/integrations/{integration_id}/query",
            json={"sql": sql},
            headers={**self.secret, **headers},
        )


@pytest.fixture(scope="module")
async def demo_names(databases: TestDatabases) -> AsyncIterator[Demo]:
    """One demo database for the module (queries here only read), dropped at its end."""
    suffix = uuid.uuid4().hex[:10]
    names = Demo(f"demo_q_{suffix}", f"demo_q_reader_{suffix}")
    yield names
    await drop_demo(databases.admin_url, names.database, names.role)


@pytest.fixture
async def broker(
    settings: Settings, store: Store, databases: TestDatabases, demo_names: Demo
) -> AsyncIterator[Broker]:
    # The tests reach test servers on loopback and sockets, as a listed allowance would.
    allow = f"127.0.0.1, {make_url(databases.admin_url).query['host']}"
    settings = settings.model_copy(
        update={"query_timeout_s": 0.5, "query_max_rows": MAX_ROWS, "integration_allow": allow}
    )
    workspace_id = await store.ensure_workspace("acme")
    demo = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=demo_names.database, role=demo_names.role
    )
    _, credentials = await store.integration_credentials(demo.integration_id)
    password = make_url(credentials["dsn"]).password
    assert password
    run = await store.create_run(
        await store.create_thread(workspace_id, None), writer_id="test", lease_s=60
    )
    capability = mint_capability(
        settings.require(settings.secret, "s"), run.run_id, workspace_id, ttl_s=300
    )
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        yield Broker(http, settings, store, workspace_id, demo, password, capability)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- reads ------------------------------------------------------------------------------


async def test_a_select_answers_columns_and_json_rows(broker: Broker) -> None:
    answer = await broker.query(
        broker.demo.integration_id,
        "SELECT id, name, price, in_stock FROM products ORDER BY id LIMIT 3",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["columns"] == ["id", "name", "price", "in_stock"]
    assert body["truncated"] is False
    assert [row[0] for row in body["rows"]] == [1, 2, 3]
    assert body["rows"][0][1:] == ["Ethiopia Yirgacheffe 250g", 12.5, True]

    dated = await broker.query(
        broker.demo.integration_id,
        "SELECT ordered_at, total, customer_id FROM order_totals ORDER BY order_id LIMIT 1",
    )
    ordered_at, total, _ = dated.json()["rows"][0]
    assert isinstance(ordered_at, str) and ordered_at.startswith("202")
    assert isinstance(total, float)


async def test_a_big_select_is_cut_at_the_row_cap_and_says_so(broker: Broker) -> None:
    big = (await broker.query(broker.demo.integration_id, "SELECT * FROM events")).json()
    assert len(big["rows"]) == MAX_ROWS
    assert big["truncated"] is True
    assert big["columns"] == ["id", "customer_id", "kind", "path", "occurred_at"]

    exact = await broker.query(
        broker.demo.integration_id,
        f"SELECT * FROM events ORDER BY id LIMIT {MAX_ROWS}",
    )
    assert len(exact.json()["rows"]) == MAX_ROWS
    assert exact.json()["truncated"] is False


def _rss_kib(field: str) -> int:
    """A line of /proc/self/status, in KiB (VmRSS now, VmHWM the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Make VmHWM (the peak RSS) start again from the current RSS (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


async def test_a_400_mb_answer_is_cut_at_the_byte_cap_and_memory_stays_flat(
    broker: Broker,
) -> None:
    cap = broker.settings.query_max_bytes
    assert cap == 256 * 1024  # the default
    _reset_peak_rss()
    before = _rss_kib("VmRSS")
    answer = await broker.query(
        broker.demo.integration_id,
        "SELECT repeat('x', 1000000) FROM generate_series(1, 400)",
    )
    peak_growth_mib = (_rss_kib("VmHWM") - before) / 1024
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    assert body["truncated"] is True
    assert 0 < len(answer.content) <= cap
    assert len(body["rows"]) >= 2  # cells are cut, so several rows still fit
    (cell,) = body["rows"][0]
    assert cell.startswith("xxxx") and cell.endswith("…[cut: 1000000 bytes]")
    assert len(cell.encode()) <= cap // 8
    # 400 MB went through the server; the broker held a few rows of it at a time.
    print(f"answer {len(answer.content)} bytes, peak RSS growth {peak_growth_mib:.1f} MiB")
    assert peak_growth_mib < 64, f"peak RSS grew by {peak_growth_mib:.0f} MiB"


async def test_a_200_mb_cell_is_cut_by_postgresql_and_memory_stays_flat(broker: Broker) -> None:
    cap = broker.settings.query_max_bytes
    async with broker.with_settings(query_timeout_s=30) as patient:
        _reset_peak_rss()
        before = _rss_kib("VmRSS")
        answer = await patient.query(
            patient.demo.integration_id, "select repeat(chr(120), 200000000), 1 AS n;"
        )
        peak_growth_mib = (_rss_kib("VmHWM") - before) / 1024
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    assert body["columns"] == ["repeat", "n"]
    ((cell, n),) = body["rows"]
    assert n == 1
    assert cell.startswith("xxxx") and cell.endswith("…[cut: 200000000 bytes]")
    assert len(cell.encode()) <= cap // 8
    # The broker never received the value: a few KiB, not 200 MB (x3 decoded).
    print(f"peak RSS growth {peak_growth_mib:.1f} MiB")
    assert peak_growth_mib < 32, f"peak RSS grew by {peak_growth_mib:.0f} MiB"


async def test_every_kind_of_column_survives_the_server_side_cut(broker: Broker) -> None:
    sql = (
        "SELECT 1 AS a, 1 AS a, NULL AS none, ROW(1, 'x') AS rec, ARRAY[1, 2] AS arr,"
        " '{\"k\": [1]}'::jsonb AS doc, '\\x0102'::bytea AS raw, int4range(1, 5) AS span,"
        " pg_sleep(0) AS nothing, repeat('é', 40000) AS wide,"
        " decode(repeat('ff', 40000), 'hex') AS blob"
        " -- a trailing comment"
    )
    answer = await broker.query(broker.demo.integration_id, sql)
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    assert body["columns"][:3] == ["a", "a", "none"]
    row = body["rows"][0]
    assert row[:8] == [
        1,
        1,
        None,
        [1, "x"],
        [1, 2],
        {"k": [1]},
        "AQI=",
        {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False},
    ]
    assert row[9].startswith("éé") and row[9].endswith("…[cut: 80000 bytes]")
    assert row[10].startswith("\\xffff") and row[10].endswith("…[cut: 80002 bytes]")
    for sql in ("SHOW server_version", "VALUES (1), (2)", "TABLE products", "SELECT"):
        assert (await broker.query(broker.demo.integration_id, sql)).status_code == 200, sql


async def test_infinities_and_far_dates_are_answered_as_json_safe_text(broker: Broker) -> None:
    sql = (
        "SELECT 'infinity'::timestamp, '-infinity'::timestamp, 'infinity'::timestamptz,"
        " 'infinity'::date, '-infinity'::date, 'NaN'::numeric, 'Infinity'::numeric,"
        " 'NaN'::float8, '-Infinity'::float8, '20000-01-02 03:04:05'::timestamp,"
        " '2024-02-29 10:11:12.5'::timestamp, '2024-02-29 10:11:12+02'::timestamptz,"
        " '1999-12-31'::date, '0044-03-15 BC'::date, '12345-06-07'::date"
    )
    answer = await broker.query(broker.demo.integration_id, sql)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["rows"][0] == [
        "infinity",
        "-infinity",
        "infinity",
        "infinity",
        "-infinity",
        "NaN",
        "Infinity",
        "NaN",
        "-Infinity",
        "+20000-01-02T03:04:05",
        "2024-02-29T10:11:12.500000",
        "2024-02-29T08:11:12+00:00",
        "1999-12-31",
        "-0043-03-15",
        "+12345-06-07",
    ]


async def test_rows_under_the_cap_are_answered_whole_and_the_byte_cap_counts_json(
    broker: Broker,
) -> None:
    async with broker.with_settings(query_max_bytes=4096) as small:
        answer = await small.query(
            small.demo.integration_id, "SELECT id, repeat('é', 100) FROM generate_series(1, 200) id"
        )
        body = answer.json()
        assert body["truncated"] is True
        assert len(answer.content) <= 4096
        assert all(row[1] == "é" * 100 for row in body["rows"])  # nothing cut inside a row
        next_row = json.dumps([len(body["rows"]) + 1, "é" * 100], ensure_ascii=False)
        assert len(answer.content) + len(next_row.encode()) + 1 > 4096  # it stopped when full


# --- refusals ---------------------------------------------------------------------------

WRITES = [
    "DELETE FROM order_items",
    "UPDATE orders SET status = 'refunded'",
    "INSERT INTO products VALUES (999, 'x', 'y', 1, true)",
    "DROP TABLE orders",
    "TRUNCATE events",
    "SELECT 1; DELETE FROM order_items",
    "SELECT count(*) FROM orders; DROP TABLE orders",
    "WITH gone AS (DELETE FROM order_items RETURNING 1) SELECT count(*) FROM gone",
    "SELECT set_config('transaction_read_only', 'off', true)",
    "/* SELECT */ DELETE FROM customers",
]


async def test_writes_are_refused_and_change_nothing(
    broker: Broker, databases: TestDatabases, demo_names: Demo
) -> None:
    before = await table_counts(databases.admin_url, demo_names.database)
    assert set(before) == set(TABLES) and all(before.values())
    for sql in WRITES:  # one test, not one per statement: each test costs a database clone
        answer = await broker.query(broker.demo.integration_id, sql)
        assert answer.status_code == 400, (sql, answer.text)
        assert answer.json()["error"]["code"] == "query_rejected", sql
        assert await table_counts(databases.admin_url, demo_names.database) == before, sql


async def test_the_read_only_transaction_holds_even_for_a_role_that_may_write(
    broker: Broker, tenant_pg: TenantServer
) -> None:
    # A tenant's role that owns its table: only the transaction stands in the way.
    suffix = uuid.uuid4().hex[:8]
    database, role = f"ledger_{suffix}", f"owner_{suffix}"
    admin = await asyncpg.connect(tenant_pg.admin_dsn)
    await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{FAKE_PASSWORD}'")
    await admin.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    dsn = tenant_pg.dsn(role, FAKE_PASSWORD, database)
    owned = await asyncpg.connect(dsn)
    await owned.execute("CREATE TABLE ledger AS SELECT generate_series(1, 3) AS n")
    await owned.close()
    try:
        owner = await broker.store.create_integration(
            broker.workspace_id, "postgres", "owner", {"dsn": dsn}
        )
        count_sql = "SELECT count(*) FROM ledger"
        allowed = broker.with_settings(integration_allow="127.0.0.1")
        async with allowed as client:
            before = (await client.query(owner.integration_id, count_sql)).json()["rows"]
            assert before == [[3]]
            refused = {
                # Refused as a subquery (the cell cap wraps it), before it ever runs.
                "WITH gone AS (DELETE FROM ledger RETURNING 1) SELECT count(*) FROM gone": (
                    "data-modifying"
                ),
                "SELECT n FROM ledger FOR UPDATE": "read-only transaction",
                "SELECT 1; DELETE FROM ledger": "multiple commands",
                "SELECT set_config('transaction_read_only', 'off', true)": "read-write mode",
                "SELECT set_config('statement_timeout', '0', false), pg_sleep(5)": (
                    "statement timeout"
                ),
            }
            for sql, reason in refused.items():
                answer = await client.query(owner.integration_id, sql)
                assert answer.status_code in (400, 408), (sql, answer.text)
                assert reason in answer.json()["error"]["message"], (sql, answer.text)
            assert (await client.query(owner.integration_id, count_sql)).json()["rows"] == before
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_a_statement_over_the_timeout_is_cancelled_promptly(broker: Broker) -> None:
    started = time.monotonic()
    answer = await broker.query(broker.demo.integration_id, "SELECT pg_sleep(30)")
    elapsed = time.monotonic() - started
    assert answer.status_code == 408, answer.text
    assert answer.json()["error"]["code"] == "query_timeout"
    assert elapsed < 5  # the timeout is 0.5 s; the margin is for a loaded machine
    after = await broker.query(broker.demo.integration_id, "SELECT 1 AS one")
    assert after.json()["rows"] == [[1]]  # nothing is left stuck


async def test_a_query_that_fails_is_422_with_the_database_s_reason(broker: Broker) -> None:
    for sql, fragment in (
        ("SELECT * FROM no_such_table", 'relation "no_such_table" does not exist'),
        ("SELECT nope FROM orders", "nope"),
        ("SELECT FROM WHERE", "syntax error"),
        ("SELECT 1/0", "division by zero"),
        ("SELECT $1", "argument"),
    ):
        answer = await broker.query(broker.demo.integration_id, sql)
        assert answer.status_code == 422, (sql, answer.text)
        assert answer.json()["error"]["code"] == "query_failed", sql
        assert fragment in answer.json()["error"]["message"], sql


# --- who may ask, and about what ---------------------------------------------------------


async def test_a_missing_or_wrong_local_secret_is_401(broker: Broker) -> None:
    url = f"/api/agents/integrations/{broker.demo.integration_id}/query"
    token = mint_token(broker.settings.require(broker.settings.secret, "s"), broker.workspace_id)
    for headers in (
        {},
        {"x-local-secret": ""},
        {"x-local-secret": "wrong"},
        {"x-local-secret": broker.secret["x-local-secret"] + "x"},
        {"Authorization": f"Bearer {token}"},  # a member's token is not the agent's secret
    ):
        answer = await broker.http.post(url, json={"sql": "SELECT 1"}, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["code"] == "unauthorized"
    # Authentication comes first: a stranger learns nothing about ids or bodies.
    stranger = await broker.http.post(
        f"/api/agents/integrations/{uuid.uuid4()}/query", json={}, headers={"x-local-secret": "x"}
    )
    assert stranger.status_code == 401


async def test_an_unknown_integration_is_404(broker: Broker) -> None:
    for integration_id in (uuid.uuid4(), "not-a-uuid"):
        answer = await broker.query(integration_id, "SELECT 1")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"


async def test_a_bad_body_is_422(broker: Broker) -> None:
    bodies: list[Any] = [
        {},
        {"sql": ""},
        {"sql": 1},
        {"sql": None},
        {"query": "SELECT 1"},
        {"sql": "SELECT 1", "extra": True},
        ["SELECT 1"],
        "x",
    ]
    for body in bodies:
        answer = await broker.http.post(
            f"/api/agents/integrations/{broker.demo.integration_id}/query",
            json=body,
            headers=broker.secret,
        )
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "validation_error", body
    not_json = await broker.http.post(
        f"/api/agents/integrations/{broker.demo.integration_id}/query",
        content=b"{not json",
        headers={**broker.secret, "content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


async def test_an_unreachable_database_is_502(broker: Broker, databases: TestDatabases) -> None:
    closed = f"postgresql://analyst:{FAKE_PASSWORD}@127.0.0.1:{_closed_port()}/warehouse"
    missing_db = (
        make_url(databases.admin_url)
        .set(drivername="postgresql", database=f"gone_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    for name, dsn in (("closed", closed), ("missing", missing_db)):
        record = await broker.store.create_integration(
            broker.workspace_id, "postgres", name, {"dsn": dsn}
        )
        answer = await broker.query(record.integration_id, "SELECT 1")
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "integration_unavailable"
        assert FAKE_PASSWORD not in answer.text
        assert "127.0.0.1" not in answer.text


# --- what is said about it ---------------------------------------------------------------


async def test_no_credentials_in_any_answer_or_log_line_and_the_request_id_is_bound(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    closed = await broker.store.create_integration(
        broker.workspace_id,
        "postgres",
        "closed",
        {"dsn": f"postgresql://analyst:{FAKE_PASSWORD}@127.0.0.1:{_closed_port()}/w"},
    )
    demo = broker.demo.integration_id
    calls = [
        (demo, "SELECT * FROM customers LIMIT 2", 200),
        (demo, "DELETE FROM customers", 400),
        (demo, "SELECT 1; DELETE FROM customers", 400),
        (demo, "SELECT pg_sleep(30)", 408),
        (demo, "SELECT * FROM nowhere", 422),
        (closed.integration_id, "SELECT 1", 502),
    ]
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        for number, (integration_id, sql, status) in enumerate(calls):
            answer = await broker.query(integration_id, sql, **{"X-Request-ID": f"req-{number}"})
            assert answer.status_code == status, (sql, answer.text)
            assert answer.headers["x-request-id"] == f"req-{number}"
            texts.append(answer.text)
        listed = await broker.http.get(
            "/api/integrations",
            headers={
                "Authorization": "Bearer "
                + mint_token(
                    broker.settings.require(broker.settings.secret, "s"),
                    broker.workspace_id,
                )
            },
        )
        texts.append(listed.text)

    queries = [e for e in logs if e["event"] in ("integration_query", "integration_query_failed")]
    assert [e["request_id"] for e in queries] == [f"req-{n}" for n in range(len(calls))]
    assert [e.get("code", "ok") for e in queries] == [
        "ok",
        "query_rejected",
        "query_rejected",
        "query_timeout",
        "query_failed",
        "integration_unavailable",
    ]
    everything = "\n".join([*texts, repr(logs), caplog.text])
    for secret in (FAKE_PASSWORD, broker.demo_password):
        assert secret not in everything


async def test_outcomes_are_counted_in_the_metrics(broker: Broker) -> None:
    await broker.query(broker.demo.integration_id, "SELECT 1")
    await broker.query(broker.demo.integration_id, "DROP TABLE orders")
    text = (await broker.http.get("/metrics")).text
    assert 'broker_integration_queries_total{outcome="ok"} 1.0' in text
    assert 'broker_integration_queries_total{outcome="query_rejected"} 1.0' in text
    assert "broker_integration_query_duration_seconds_count 2.0" in text
