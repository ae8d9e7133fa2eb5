"""The offline demo agent answers data questions with the figures a person would compute.

The real path: the broker (write and read sides), the agent service with the
scripted model, the demo integration on a real PostgreSQL. Each question is
asked through the public API; the figures in the streamed answer are checked
against SQL written here, by hand, against the demo database (often by
another route: the `order_totals` view rather than the line items).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
import pytest

from agents.app import create_app as create_agent_app
from agents.catalog import CATALOG_SQL
from agents.settings import AgentSettings
from broker.app import create_app
from broker.integrations.demo import ensure_demo_integration
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import admin_dsn, drop_demo
from tests.servers import serve

TABLES = ("customers", "events", "order_items", "order_totals", "orders", "products")


@dataclass
class Demo:
    http: httpx.AsyncClient
    db: Any  # an asyncpg connection to the demo database, as its owner

    async def ask(self, question: str) -> tuple[str, list[dict[str, Any]]]:
        """The answer's text and the run's events, once the run completed."""
        thread = (await self.http.post("/api/threads", json={"title": "q"})).json()["thread_id"]
        started = await self.http.post(f"/api/threads/{thread}/runs", json={"message": question})
        assert started.status_code == 202, started.text
        events: list[dict[str, Any]] = []
        async with self.http.stream(
            "POST", f"/api/runs/{started.json()['run_id']}/subscribe", json={"cursor": None}
        ) as response:
            async for frame in aiter_sse(response.aiter_bytes()):
                events.append(frame.json())
        assert events[-1]["event_type"] == "complete", events[-1]
        text = "".join(e["data"]["text"] for e in events if e["event_type"] == "text")
        return text, events


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def demo(settings: Settings, store: Store, databases: TestDatabases) -> AsyncIterator[Demo]:
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_q_{suffix}", f"demo_q_reader_{suffix}"
    workspace_id = await store.ensure_workspace("acme")
    await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    broker_port, agent_port = _free_port(), _free_port()
    broker_url, agent_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{agent_port}"
    agent_settings = AgentSettings(
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        BROKER_URL=broker_url,
        ANTHROPIC_API_KEY=None,
        AGENT_SCRIPTED_DELAY_MS=0,
    )
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    db = await asyncpg.connect(admin_dsn(databases.admin_url, database))
    try:
        async with (
            serve(create_agent_app(agent_settings), port=agent_port),
            serve(
                create_app(settings.model_copy(update={"agent_url": agent_url})), port=broker_port
            ),
            httpx.AsyncClient(
                base_url=broker_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as http,
        ):
            yield Demo(http, db)
    finally:
        await db.close()
        await drop_demo(databases.admin_url, database, role)


def _bold(text: str) -> Decimal:
    """The figure in bold in the answer."""
    match = re.search(r"\*\*([-\d,.]+)\*\*", text)
    assert match is not None, text
    return Decimal(match.group(1).replace(",", ""))


def _table(text: str) -> list[list[str]]:
    """The body rows of the answer's Markdown table, cell by cell."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) >= 2 and set(lines[1]) <= set("|-: "), text
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def _number(cell: str) -> Decimal:
    return Decimal(cell.replace(",", ""))


def _queries(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["input"]["sql"] for e in events if e["event_type"] == "tool_use"]


async def test_counts_in_total_and_over_periods_relative_to_the_data(demo: Demo) -> None:
    db = demo.db
    for question, table in [
        ("How many customers do we have?", "customers"),
        ("How many orders are there in total?", "orders"),
        ("count the products", "products"),
    ]:
        text, events = await demo.ask(question)
        assert _bold(text) == await db.fetchval(f"SELECT count(*) FROM {table}"), question
        assert _queries(events)[0] == CATALOG_SQL

    latest = await db.fetchval("SELECT max(ordered_at) AT TIME ZONE 'UTC' FROM orders")
    month = (latest.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    text, events = await demo.ask("How many orders were placed last month?")
    expected = await db.fetchval(
        "SELECT count(*) FROM orders"
        " WHERE date_trunc('month', ordered_at AT TIME ZONE 'UTC')::date = $1",
        month,
    )
    assert _bold(text) == expected
    assert month.strftime("%B %Y") in text and latest.date().isoformat() in text, text
    assert len(_queries(events)) == 3  # the catalog, the latest timestamp, the count

    text, _ = await demo.ask("How many customers placed orders last month?")
    assert _bold(text) == await db.fetchval(
        "SELECT count(DISTINCT customer_id) FROM orders"
        " WHERE date_trunc('month', ordered_at AT TIME ZONE 'UTC')::date = $1",
        month,
    )

    text, _ = await demo.ask("What was the number of events in 2025?")
    assert "2025" in text
    assert _bold(text) == await db.fetchval(
        "SELECT count(*) FROM events WHERE extract(year FROM occurred_at AT TIME ZONE 'UTC') = 2025"
    )

    text, _ = await demo.ask("What was the total revenue last year?")
    year = latest.year - 1
    assert f"{year}" in text
    assert _bold(text) == await db.fetchval(
        "SELECT sum(total) FROM order_totals"
        " WHERE extract(year FROM ordered_at AT TIME ZONE 'UTC') = $1",
        year,
    )


async def test_top_n_by_a_sum_or_a_count(demo: Demo) -> None:
    db = demo.db
    text, _ = await demo.ask("Which customers spent the most?")
    expected = await db.fetch(
        "SELECT c.name, sum(t.total) AS spent FROM customers c"
        " JOIN order_totals t ON t.customer_id = c.id"
        " GROUP BY c.id ORDER BY spent DESC LIMIT 5"
    )
    assert [(r[0], _number(r[1])) for r in _table(text)] == [(r[0], r[1]) for r in expected]

    text, _ = await demo.ask("What are the top 5 products by sales?")
    expected = await db.fetch(
        "SELECT p.name, sum(i.quantity * i.unit_price) AS sales FROM products p"
        " JOIN order_items i ON i.product_id = p.id GROUP BY p.id ORDER BY sales DESC LIMIT 5"
    )
    assert [(r[0], _number(r[1])) for r in _table(text)] == [(r[0], r[1]) for r in expected]

    text, _ = await demo.ask("Top 3 customers by number of orders")
    rows = _table(text)
    assert len(rows) == 3
    counts = dict(
        await db.fetch(
            "SELECT c.name, count(*) FROM customers c JOIN orders o ON o.customer_id = c.id"
            " GROUP BY c.id"
        )
    )
    most = max(counts.values())
    assert _number(rows[0][1]) == most
    assert all(counts[name] == _number(count) for name, count in rows)


async def test_breakdowns_by_month_and_by_a_column(demo: Demo) -> None:
    db = demo.db
    text, _ = await demo.ask("Show revenue by month")
    expected = await db.fetch(
        "SELECT to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, sum(total)"
        " FROM order_totals GROUP BY 1 ORDER BY 1"
    )
    assert len(expected) <= 50
    assert [(r[0], _number(r[1])) for r in _table(text)] == [(r[0], r[1]) for r in expected]

    text, _ = await demo.ask("How many orders per month?")
    expected = await db.fetch(
        "SELECT to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM'), count(*) FROM orders"
        " GROUP BY 1 ORDER BY 1"
    )
    assert [(r[0], int(r[1])) for r in _table(text)] == [(r[0], r[1]) for r in expected]

    text, _ = await demo.ask("top 3 categories by revenue")
    expected = await db.fetch(
        "SELECT p.category, sum(i.quantity * i.unit_price) AS revenue FROM order_items i"
        " JOIN products p ON p.id = i.product_id GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
    )
    assert [(r[0], _number(r[1])) for r in _table(text)] == [(r[0], r[1]) for r in expected]

    text, _ = await demo.ask("Number of customers by country")
    expected = await db.fetch("SELECT country, count(*) FROM customers GROUP BY 1")
    assert {r[0]: int(r[1]) for r in _table(text)} == dict(expected)


async def test_rows_literal_sql_and_what_it_cannot_do(demo: Demo) -> None:
    db = demo.db
    text, events = await demo.ask("Show me some orders")
    ids = [int(r[0]) for r in _table(text)]
    assert ids == [r[0] for r in await db.fetch("SELECT id FROM orders ORDER BY id LIMIT 10")]

    text, events = await demo.ask("select * from orders limit 3")
    assert _queries(events) == ["select * from orders limit 3"]
    rows = _table(text)
    assert [int(r[0]) for r in rows] == [
        r[0] for r in await db.fetch("select * from orders limit 3")
    ]

    text, events = await demo.ask("What is the average basket size?")
    assert _queries(events) == [CATALOG_SQL]
    for table in TABLES:
        assert f"`{table}`" in text, text
    assert "how many" in text.lower()

    text, events = await demo.ask("select * from no_such_table")
    result = next(e for e in events if e["event_type"] == "tool_result")
    assert result["data"]["is_error"] is True
    assert "failed" in text and "no_such_table" in text
