"""The planner over a schema unlike the demo's (a SaaS billing database), so it is not tuned
to the demo's names: counts, periods relative to the data, top-N, breakdowns, rows, literal
SQL, and the "can't" answer naming the tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agents.answers import answer, markdown_table
from agents.catalog import Catalog, parse_catalog
from agents.periods import find_period
from agents.planner import Cannot, Lookup, Query, plan

_COLUMNS = ["schema", "name", "kind", "columns", "primary_key", "foreign_keys"]
_ROWS: list[list[Any]] = [
    [
        "public",
        "accounts",
        "table",
        [["id", "bigint"], ["company", "text"], ["region", "text"], ["created_on", "date"]],
        ["id"],
        [],
    ],
    [
        "billing",
        "invoices",
        "table",
        [
            ["id", "bigint"],
            ["account_id", "bigint"],
            ["issued_at", "timestamp with time zone"],
            ["amount_due", "numeric(12,2)"],
        ],
        ["id"],
        [["account_id", "public", "accounts", "id"]],
    ],
    [
        "public",
        "plans",
        "table",
        [["id", "integer"], ["title", "text"], ["monthly_fee", "numeric(8,2)"]],
        ["id"],
        [],
    ],
    [
        "public",
        "subscriptions",
        "table",
        [
            ["id", "integer"],
            ["account_id", "bigint"],
            ["plan_id", "integer"],
            ["started_at", "timestamp without time zone"],
            ["seats", "integer"],
        ],
        ["id"],
        [["account_id", "public", "accounts", "id"], ["plan_id", "public", "plans", "id"]],
    ],
    [
        "public",
        "support_tickets",
        "table",
        [
            ["id", "integer"],
            ["account_id", "bigint"],
            ["opened_at", "timestamp with time zone"],
            ["priority", "text"],
        ],
        ["id"],
        [["account_id", "public", "accounts", "id"]],
    ],
]
CATALOG = parse_catalog({"columns": _COLUMNS, "rows": _ROWS, "truncated": False})


def _query(question: str, latest: dict[str, object] | None = None) -> Query:
    planned = plan(question, CATALOG, latest)
    assert isinstance(planned, Query), planned
    return planned


def test_the_catalog_keeps_schemas_keys_and_foreign_keys() -> None:
    assert CATALOG.names == [
        "accounts",
        "billing.invoices",
        "plans",
        "subscriptions",
        "support_tickets",
    ]
    invoices = CATALOG.table("billing.invoices")
    assert invoices is not None and invoices.primary_key == ("id",)
    assert invoices.foreign_keys[0].ref_table == "accounts"


@pytest.mark.parametrize(
    "output",
    [
        None,
        {"rows": "nope"},
        {"columns": ["n"], "rows": [[1]]},
        {"columns": _COLUMNS, "rows": [["public", "t"]]},
    ],
)
def test_a_result_that_is_not_a_catalog_is_refused(output: object) -> None:
    with pytest.raises(ValueError):
        parse_catalog(output)


@pytest.mark.parametrize(
    ("question", "table"),
    [
        ("How many accounts are there?", "accounts"),
        ("count the subscriptions", "subscriptions"),
        ("What is the number of support tickets?", "support_tickets"),
    ],
)
def test_counts_name_the_table_the_question_names(question: str, table: str) -> None:
    query = _query(question)
    assert query.kind == "value"
    assert query.sql.startswith("SELECT count(*)") and f"FROM {table} t0" in query.sql
    assert "WHERE" not in query.sql and "in total" in query.headline


def test_a_period_relative_to_the_data_first_reads_the_latest_timestamp() -> None:
    question = "How many support tickets were opened last month?"
    lookup = plan(question, CATALOG)
    assert isinstance(lookup, Lookup)
    assert lookup.sql == "SELECT max(opened_at) AS latest FROM support_tickets"
    query = _query(question, {lookup.sql: "2024-07-15T10:00:00+00:00"})
    assert (
        "WHERE t0.opened_at >= TIMESTAMPTZ '2024-06-01 00:00:00+00' "
        "AND t0.opened_at < TIMESTAMPTZ '2024-07-01 00:00:00+00'"
    ) in query.sql
    assert "June 2024" in query.headline and "2024-07-15" in query.headline


def test_an_absolute_period_needs_no_lookup_and_follows_the_column_type() -> None:
    query = _query("How many subscriptions started in March 2024?")
    assert "t0.started_at >= TIMESTAMP '2024-03-01 00:00:00'" in query.sql
    assert "t0.started_at < TIMESTAMP '2024-04-01 00:00:00'" in query.sql
    query = _query("how many accounts in 2023")
    assert "t0.created_on >= DATE '2023-01-01' AND t0.created_on < DATE '2024-01-01'" in query.sql


def test_top_n_by_money_joins_along_foreign_keys() -> None:
    query = _query("Which accounts have the highest revenue?")
    assert query.kind == "table" and query.money == {"revenue"}
    assert "FROM billing.invoices t0\nJOIN accounts t1 ON t1.id = t0.account_id" in query.sql
    assert "SELECT t1.company AS company, sum(t0.amount_due) AS revenue" in query.sql
    assert "GROUP BY t1.id, t1.company" in query.sql
    assert query.sql.endswith("ORDER BY revenue DESC, t1.id\nLIMIT 5")


def test_top_n_by_a_count_and_the_bottom_n() -> None:
    query = _query("Top 3 plans by number of subscriptions")
    assert "FROM subscriptions t0\nJOIN plans t1 ON t1.id = t0.plan_id" in query.sql
    assert "SELECT t1.title AS title, count(*) AS subscriptions" in query.sql
    assert query.sql.endswith("LIMIT 3")
    query = _query("Which accounts have the fewest support tickets?")
    assert "FROM support_tickets t0" in query.sql and "ASC" in query.sql


def test_top_n_groups_by_a_named_column_of_a_joined_table() -> None:
    query = _query("top 2 regions by revenue")
    assert "SELECT t1.region AS region, sum(t0.amount_due) AS revenue" in query.sql
    assert "JOIN accounts t1 ON t1.id = t0.account_id" in query.sql
    assert query.sql.endswith("LIMIT 2") and "region values" in query.headline


def test_a_ranking_of_nothing_in_the_database_is_a_cannot() -> None:
    assert isinstance(plan("top 5 galaxies", CATALOG), Cannot)


def test_a_list_price_alone_is_not_revenue() -> None:
    # plans.monthly_fee is a price with no quantity beside it; the invoices hold the money.
    query = _query("What was the total revenue?")
    assert query.sql == "SELECT sum(t0.amount_due) AS revenue\nFROM billing.invoices t0"


def test_breakdowns_by_month_in_utc_and_by_a_column() -> None:
    query = _query("invoice revenue by month")
    assert "to_char(date_trunc('month', (t0.issued_at AT TIME ZONE 'UTC')), 'YYYY-MM')" in (
        query.sql
    )
    assert "sum(t0.amount_due) AS revenue" in query.sql and "ORDER BY 1" in query.sql
    query = _query("support tickets by priority")
    assert "SELECT t0.priority AS priority, count(*) AS support_tickets" in query.sql
    assert "GROUP BY 1" in query.sql


def test_listing_rows_newest_first_when_asked() -> None:
    query = _query("show me the 3 latest invoices")
    assert query.kind == "rows"
    assert query.sql == (
        "SELECT t0.*\nFROM billing.invoices t0\nORDER BY t0.issued_at DESC\nLIMIT 3"
    )
    assert _query("list some plans").sql == "SELECT t0.*\nFROM plans t0\nORDER BY t0.id\nLIMIT 10"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT company FROM accounts LIMIT 2",
        "select company from accounts",
        "```sql\nselect count(*) from plans\n```",
        "WITH x AS (SELECT 1) SELECT * FROM x",
    ],
)
def test_a_literal_read_runs_as_written(sql: str) -> None:
    query = _query(sql)
    assert query.kind == "rows"
    assert query.sql == sql.removeprefix("```sql\n").removesuffix("\n```")


def test_english_that_starts_with_select_is_not_sql() -> None:
    planned = plan("Select all accounts from Europe", CATALOG)
    assert not (isinstance(planned, Query) and planned.sql.startswith("Select"))


@pytest.mark.parametrize(
    "question", ["What is the churn rate?", "Why did revenue drop?", "Tell me about quokkas"]
)
def test_what_it_cannot_answer_it_says_naming_the_tables(question: str) -> None:
    planned = plan(question, CATALOG)
    assert isinstance(planned, Cannot)
    for name in CATALOG.names:
        assert f"`{name}`" in planned.message
    assert "how many" in planned.message


def test_an_empty_catalog_cannot_answer() -> None:
    planned = plan("How many accounts are there?", Catalog(tables=()))
    assert isinstance(planned, Cannot) and "no table" in planned.message


@pytest.mark.parametrize(
    ("phrase", "latest", "start", "end"),
    [
        ("last month", "2025-03-31", "2025-02-01", "2025-03-01"),
        ("previous month", "2025-01-10", "2024-12-01", "2025-01-01"),
        ("this month", "2025-03-31", "2025-03-01", "2025-04-01"),
        ("last year", "2025-03-31", "2024-01-01", "2025-01-01"),
        ("last week", "2025-03-05", "2025-02-24", "2025-03-03"),
        ("last 7 days", "2025-03-05", "2025-02-27", "2025-03-06"),
        ("yesterday", "2025-03-05", "2025-03-04", "2025-03-05"),
    ],
)
def test_periods_are_anchored_on_the_latest_date(
    phrase: str, latest: str, start: str, end: str
) -> None:
    period = find_period(f"orders {phrase}?")
    assert period is not None and period.relative
    bounds = period.bounds(dt.date.fromisoformat(latest))
    assert (bounds.start.isoformat(), bounds.end.isoformat()) == (start, end)


def test_no_period_or_a_meaningless_one_is_none() -> None:
    assert find_period("how many orders") is None
    assert find_period("orders in the last 0 days") is None
    period = find_period("orders last month")
    assert period is not None
    with pytest.raises(ValueError):
        period.bounds(None)


def test_answers_format_money_counts_and_escape_cells() -> None:
    query = _query("Which accounts have the highest revenue?")
    output = {
        "columns": ["company", "revenue"],
        "rows": [["A|B Ltd", 1234.5], ["C", "99.999"]],
        "truncated": False,
    }
    text = answer(query, output)
    assert "| A\\|B Ltd | 1,234.50 |" in text and "| C | 100.00 |" in text
    count = _query("How many accounts are there?")
    assert "**12,345**" in answer(count, {"columns": ["accounts"], "rows": [[12345]]})
    assert "cannot read" in answer(count, "not a result")
    assert "no rows" in answer(query, {"columns": ["company", "revenue"], "rows": []})
    table = markdown_table(["id", "note"], [[1001, None], [1002, "two\nlines"]])
    assert table.splitlines()[2:] == ["| 1001 |  |", "| 1002 | two lines |"]
