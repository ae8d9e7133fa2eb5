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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
import pytest

from agents.catalog import CATALOG_SQL
from broker.store.postgres import Store
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from tests.database import TestDatabases
from tests.e2e.whole_system import whole_system
from tests.integration.test_integrations_demo import admin_dsn

TABLES = ("customers", "events", "order_items", "order_totals", "orders", "products")


@dataclass
class Demo:
    http: httpx.AsyncClient
    db: Any  # an asyncpg connection to the demo database, as its owner

    async def ask(
        self, question: str, thread: str | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """The answer's text and the run's events, once the run completed (on a new thread
        unless `thread` is given)."""
        if thread is None:
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


@pytest.fixture
async def demo(settings: Settings, store: Store, databases: TestDatabases) -> AsyncIterator[Demo]:
    async with whole_system(
        settings, store, databases, name="q", delay_ms=0, timeout_s=60
    ) as system:
        db = await asyncpg.connect(admin_dsn(databases.admin_url, system.database))
        try:
            yield Demo(system.api, db)
        finally:
            await db.close()


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


async def test_a_follow_up_on_the_thread_moves_the_period_one_month_back(demo: Demo) -> None:
    db = demo.db
    thread = (await demo.http.post("/api/threads", json={"title": "f"})).json()["thread_id"]
    await demo.ask("How many orders were placed last month?", thread)
    text, events = await demo.ask("And the month before?", thread)
    latest = await db.fetchval("SELECT max(ordered_at) AT TIME ZONE 'UTC' FROM orders")
    last = (latest.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    before = (last - dt.timedelta(days=1)).replace(day=1)
    assert _bold(text) == await db.fetchval(
        "SELECT count(*) FROM orders"
        " WHERE date_trunc('month', ordered_at AT TIME ZONE 'UTC')::date = $1",
        before,
    )
    assert before.strftime("%B %Y") in text and "canned" not in text, text
    assert len(_queries(events)) == 3  # the catalog, the latest timestamp, the count
    # Without a question to follow, the help answer names the tables instead.
    text, _ = await demo.ask("And the month before?")
    assert "canned" not in text and all(table in text for table in ("customers", "orders")), text


async def test_a_top_n_says_when_its_last_row_ties_with_the_next(demo: Demo) -> None:
    counts = [
        r[0]
        for r in await demo.db.fetch(
            "SELECT count(*) FROM customers c JOIN orders o ON o.customer_id = c.id"
            " GROUP BY c.id ORDER BY 1 DESC"
        )
    ]
    tied = next(n for n in range(1, 50) if counts[n - 1] == counts[n])
    apart = next(n for n in range(1, 50) if counts[n - 1] != counts[n])
    text, events = await demo.ask(f"Top {tied} customers by number of orders")
    assert len(_table(text)) == tied and _queries(events)[-1].endswith(f"LIMIT {tied + 1}")
    assert "is tied with" in text and f"at {counts[tied - 1]:,}" in text, text
    text, _ = await demo.ask(f"Top {apart} customers by number of orders")
    assert len(_table(text)) == apart and "tied" not in text, text
