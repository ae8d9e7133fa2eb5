"""Top-N rankings read one row more than they show, so the answer can say when the
last shown row ties with the next one (`agents/answers.py`)."""

from __future__ import annotations

from agents.answers import answer
from tests.unit.agents.test_planner import _query

COLUMNS = ["title", "subscriptions"]


def test_a_tie_at_the_cut_is_said_and_only_n_rows_are_shown() -> None:
    query = _query("Top 3 plans by number of subscriptions")
    assert query.top == 3 and query.sql.endswith("LIMIT 4")
    rows = [["Pro", 40], ["Team", 31], ["Basic", 12], ["Starter", 12]]
    text = answer(query, {"columns": COLUMNS, "rows": rows})
    assert "| Basic | 12 |" in text and "Starter |" not in text
    assert "(Basic is tied with Starter at 12" in text


def test_no_tie_or_no_row_beyond_says_nothing_more() -> None:
    query = _query("Top 3 plans by number of subscriptions")
    for rows in (
        [["Pro", 40], ["Team", 31], ["Basic", 12], ["Starter", 11]],
        [["Pro", 40], ["Team", 31], ["Basic", 12]],
        [["Pro", 40], ["Team", 40]],  # fewer rows than asked: ties inside are no cut
    ):
        text = answer(query, {"columns": COLUMNS, "rows": rows})
        assert "tied" not in text and "Starter" not in text, text


def test_a_money_tie_names_the_value_with_two_decimals() -> None:
    query = _query("Which accounts have the highest revenue?")
    rows = [[f"Co {i}", 100.5 - (i // 5)] for i in range(6)]  # rows 5 and 6 differ
    assert "tied" not in answer(query, {"columns": ["company", "revenue"], "rows": rows})
    rows[5][1] = rows[4][1]
    text = answer(query, {"columns": ["company", "revenue"], "rows": rows})
    assert "(Co 4 is tied with Co 5 at 100.50" in text
    # A cell that would break the table is escaped in the note too.
    rows[4][0] = "A|B"
    assert "(A\\|B is tied" in answer(query, {"columns": ["company", "revenue"], "rows": rows})
