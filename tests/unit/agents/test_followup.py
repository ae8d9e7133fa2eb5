"""Follow-up questions read against the thread's earlier questions (`agents/followup.py`),
then planned as standalone ones over the billing schema of the planner's tests."""

from __future__ import annotations

import datetime as dt

import pytest

from agents.followup import is_follow_up, standalone
from agents.periods import find_period
from agents.planner import Cannot, Lookup, plan
from tests.unit.agents.test_planner import CATALOG, _query

ASKED = "How many support tickets were opened last month?"


@pytest.mark.parametrize(
    ("history", "resolved"),
    [
        ([ASKED, "And the month before?"], "How many support tickets were opened 2 months ago?"),
        (
            [ASKED, "And the month before?", "and the month before that?"],
            ASKED.replace("last month", "3 months ago"),
        ),
        ([ASKED, "What about last year?"], ASKED.replace("last month", "last year")),
        ([ASKED, "And the previous month?"], ASKED.replace("last month", "2 months ago")),
        (["How many tickets this month?", "and the month before?"], "How many tickets last month?"),
        (["Revenue in March 2025?", "And the month before?"], "Revenue in February 2025?"),
        (["Revenue in January 2025?", "and the month prior?"], "Revenue in December 2024?"),
        (
            ["What was the revenue in 2024?", "And the year before?"],
            "What was the revenue in 2023?",
        ),
        (["How many tickets yesterday?", "And the day before?"], "How many tickets 2 days ago?"),
        # A small-talk message in between does not break the chain.
        ([ASKED, "thanks!", "And the month before?"], ASKED.replace("last month", "2 months ago")),
    ],
)
def test_a_follow_up_becomes_the_previous_question_with_its_period_moved(
    history: list[str], resolved: str
) -> None:
    assert standalone(history) == resolved


@pytest.mark.parametrize(
    "history",
    [
        ["And the month before?"],  # nothing earlier
        ["How many tickets are there?", "And the month before?"],  # no period to move
        [ASKED, "And the year before?"],  # another unit than the question's
        ["Tickets in the last 7 days?", "And the week before?"],  # a span, not a period
        ["hello", "And the month before?"],  # nothing earlier asked for data
    ],
)
def test_a_follow_up_that_cannot_be_resolved_stays_as_asked(history: list[str]) -> None:
    assert standalone(history) == history[-1]
    assert is_follow_up(history[-1])


def test_a_standalone_question_is_never_rewritten() -> None:
    assert standalone([ASKED, "How many accounts are there?"]) == "How many accounts are there?"
    assert standalone([ASKED, "hello there"]) == "hello there"
    assert not is_follow_up("hello there")
    assert standalone([]) == ""


def test_the_planner_answers_the_follow_up_for_the_month_before() -> None:
    question = standalone([ASKED, "And the month before?"])
    lookup = plan(question, CATALOG)
    assert isinstance(lookup, Lookup)
    query = _query(question, {lookup.sql: "2024-07-15T10:00:00+00:00"})
    assert (
        "WHERE t0.opened_at >= TIMESTAMPTZ '2024-05-01 00:00:00+00' "
        "AND t0.opened_at < TIMESTAMPTZ '2024-06-01 00:00:00+00'"
    ) in query.sql
    assert "May 2024" in query.headline and "2024-07-15" in query.headline


def test_an_unresolved_follow_up_gets_the_help_answer_naming_the_tables() -> None:
    planned = plan(standalone(["hello", "And the month before?"]), CATALOG)
    assert isinstance(planned, Cannot)
    assert "support_tickets" in planned.message


@pytest.mark.parametrize(
    ("phrase", "start", "end"),
    [
        ("2 months ago", "2025-01-01", "2025-02-01"),
        ("3 years ago", "2022-01-01", "2023-01-01"),
        ("2 weeks ago", "2025-03-17", "2025-03-24"),
        ("2 days ago", "2025-03-29", "2025-03-30"),
    ],
)
def test_n_units_ago_is_anchored_on_the_latest_date(phrase: str, start: str, end: str) -> None:
    period = find_period(f"orders {phrase}")
    assert period is not None
    bounds = period.bounds(dt.date(2025, 3, 31))
    assert (bounds.start.isoformat(), bounds.end.isoformat()) == (start, end)
