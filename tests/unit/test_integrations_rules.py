"""The pure parts of an integration query: the screen and the JSON-safe values."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import QueryRejected
from broker.integrations.rules import QueryResult, json_value, leading_keyword, screen_sql


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("SELECT 1", "select"),
        ("  \n\tselect 1", "select"),
        ("-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x", "with"),
        ("/* a /* nested */ comment */ VALUES (1)", "values"),
        ("((SELECT 1))", "select"),
        ("explain analyze select 1", "explain"),
        ("DELETE FROM t", "delete"),
        ("/* SELECT */ DROP TABLE t", "drop"),
        ("-- SELECT\nUPDATE t SET a = 1", "update"),
        ("", ""),
        ("   -- only a comment", ""),
        ("/* unterminated", ""),
        ("123", ""),
    ],
)
def test_leading_keyword_skips_blanks_comments_and_parentheses(sql: str, keyword: str) -> None:
    assert leading_keyword(sql) == keyword


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders",
        "with t as (select 1) select * from t",
        "VALUES (1, 2)",
        "TABLE orders",
        "EXPLAIN SELECT 1",
        "SHOW server_version",
        "(SELECT 1) UNION (SELECT 2)",
    ],
)
def test_reads_pass_the_screen(sql: str) -> None:
    screen_sql(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "UPDATE orders SET status = 'x'",
        "INSERT INTO orders VALUES (1)",
        "DROP TABLE orders",
        "CREATE TABLE x (a int)",
        "TRUNCATE orders",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "DO $$ BEGIN END $$",
        "CALL p()",
        "SET TRANSACTION READ WRITE",
        "COMMIT",
        "GRANT ALL ON orders TO PUBLIC",
        "/* select */ delete from orders",
        "",
        "  -- nothing",
    ],
)
def test_anything_else_is_rejected_with_a_clear_message(sql: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        screen_sql(sql)
    assert "empty" in str(caught.value) or "only read queries" in str(caught.value)
    assert caught.value.code == "query_rejected"


@dataclass
class _Range:
    lower: int | None
    upper: int | None
    lower_inc: bool
    upper_inc: bool
    isempty: bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (1.5, 1.5),
        (float("nan"), "NaN"),  # as PostgreSQL spells it, like numeric NaN
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ("text", "text"),
        (decimal.Decimal("19.99"), 19.99),
        (decimal.Decimal("12345678901234567890.12"), "12345678901234567890.12"),
        (decimal.Decimal("NaN"), "NaN"),
        (dt.date(2025, 3, 1), "2025-03-01"),
        (
            dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.UTC),
            "2025-03-01T12:30:00+00:00",
        ),
        (dt.time(9, 5), "09:05:00"),
        (dt.timedelta(days=1, hours=2, seconds=3, microseconds=500_000), "P1DT2H0M3.5S"),
        (dt.timedelta(minutes=-90), "-P0DT1H30M0S"),
        (b"\x00\x01\xff", "AAH/"),
        (memoryview(b"ab"), "YWI="),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (ipaddress.ip_address("10.0.0.1"), "10.0.0.1"),
        (ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
        (ipaddress.ip_interface("10.0.0.1/8"), "10.0.0.1/8"),
        ([1, decimal.Decimal("2.5"), [dt.date(2025, 1, 1)]], [1, 2.5, ["2025-01-01"]]),
        ({"a": {"b": b"x"}}, {"a": {"b": "eA=="}}),
        (
            _Range(1, 5, True, False, False),
            {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False},
        ),
        (object, str(object)),
    ],
)
def test_values_become_json(value: object, expected: object) -> None:
    assert json_value(value) == expected


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text()
        | st.binary()
        | st.decimals()
        | st.datetimes()
        | st.dates()
        | st.timedeltas()
        | st.uuids(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_every_value_serialises_as_strict_json(value: object) -> None:
    json.dumps(json_value(value), allow_nan=False)


def test_a_result_serialises_as_the_contract_says() -> None:
    result = QueryResult(columns=["id", "name"], rows=[[1, "a"]], truncated=True)
    assert result.to_json() == {"columns": ["id", "name"], "rows": [[1, "a"]], "truncated": True}
