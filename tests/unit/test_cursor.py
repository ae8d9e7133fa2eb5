"""Cursor parsing (design 4.2): null, "now", a decimal seq; anything else is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscribe.cursor import MAX_SEQ, NOW, After, parse_cursor, resolve_cursor
from subscribe.errors import InvalidCursor


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, After(0)),
        ("0", After(0)),
        ("now", NOW),
        ("1", After(1)),
        ("17", After(17)),
        ("007", After(7)),
        (str(MAX_SEQ), After(MAX_SEQ)),
        ("0" * 50 + "12", After(12)),
    ],
)
def test_valid_cursors_name_a_position(value: str | None, expected: object) -> None:
    assert parse_cursor(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-1",
        "1.5",
        " 3",
        "3 ",
        "3\n",
        "+3",
        "1_000",
        "1e3",
        "0x10",
        "abc",
        "NOW",
        "Now",
        "now ",
        "null",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes
        "\u00b2",  # SUPERSCRIPT TWO
        str(MAX_SEQ + 1),
        "99999999999999999999",
        "9" * 5000,  # past int()'s 4300-digit limit: still a clean refusal
    ],
)
def test_anything_else_is_an_invalid_cursor(value: str) -> None:
    with pytest.raises(InvalidCursor):
        parse_cursor(value)


@given(st.integers(min_value=0, max_value=MAX_SEQ))
def test_every_seq_round_trips(seq: int) -> None:
    assert parse_cursor(str(seq)) == After(seq)


@given(st.text(max_size=30))
def test_arbitrary_text_is_a_cursor_only_if_decimal_or_now(text: str) -> None:
    is_decimal = re.fullmatch(r"[0-9]+", text) is not None and int(text) <= MAX_SEQ
    if text == "now" or is_decimal:
        parse_cursor(text)
    else:
        with pytest.raises(InvalidCursor):
            parse_cursor(text)


def test_now_resolves_to_the_head_and_a_seq_to_itself() -> None:
    assert resolve_cursor(NOW, 42) == 42
    assert resolve_cursor(After(5), 42) == 5
    assert resolve_cursor(After(100), 42) == 100


@pytest.mark.parametrize(
    ("value", "expected"), [(0, After(0)), (5, After(5)), (MAX_SEQ, After(MAX_SEQ))]
)
def test_a_json_integer_is_a_cursor_like_its_decimal_string(value: int, expected: After) -> None:
    assert parse_cursor(value) == expected == parse_cursor(str(value))


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (-1, "not a seq"),
        (MAX_SEQ + 1, "not a seq"),
        (True, "boolean"),
        (False, "boolean"),
        (1.5, "not an integer"),
        (2.0, "not an integer"),
        ([3], "array"),
        ({"seq": 3}, "object"),
    ],
)
def test_any_other_json_value_is_refused_naming_its_type(value: object, named: str) -> None:
    with pytest.raises(InvalidCursor, match=named):
        parse_cursor(value)
