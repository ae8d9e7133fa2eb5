"""Cursors: where in a run a subscription starts (design 4.2).

A cursor is `None` (from the first event), `"now"` (only events after the
current head) or `k` (events with `seq > k`): a decimal string, or a JSON
non-negative integer, since clients naturally send back the `seq` they saw.
A JSON bool, float, array or object is refused like a malformed string. Seqs are PostgreSQL
`integer`s, so a `k` past 2^31 - 1 cannot name a position and is refused
rather than silently clamped. Only ASCII digits count: `str.isdigit()` would
accept "²" and Arabic-Indic digits, and `int()` would accept " 3", "+3"
and "1_000".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from subscribe.errors import InvalidCursor

__all__ = ["MAX_SEQ", "NOW", "After", "Cursor", "Now", "parse_cursor", "resolve_cursor"]

MAX_SEQ: Final = 2**31 - 1
_DECIMAL: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class After:
    """Events with `seq > seq`."""

    seq: int


@dataclass(frozen=True, slots=True)
class Now:
    """Events after the head at the moment of subscribing."""


NOW: Final = Now()

Cursor = After | Now


def parse_cursor(value: object) -> Cursor:
    """A client's cursor (any decoded JSON value), or `InvalidCursor` naming what was wrong."""
    if value is None:
        return After(0)
    # bool first: it is an int to Python, but `true` names no position.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidCursor(f'cursor must be null, "now" or a seq, not a JSON {_json_type(value)}')
    if isinstance(value, int):
        if not 0 <= value <= MAX_SEQ:
            raise InvalidCursor(f"cursor {value} is not a seq (0 to {MAX_SEQ})")
        return After(value)
    if value == "now":
        return NOW
    # fullmatch, not match: "$" would let a trailing newline through.
    if _DECIMAL.fullmatch(value) is None:
        raise InvalidCursor(f'cursor must be null, "now" or a decimal seq, not {value[:40]!r}')
    # Length first: int() of thousands of digits is slow, and refused past 4300.
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SEQ)) or int(digits) > MAX_SEQ:
        raise InvalidCursor(f"cursor {value[:40]} is past the largest seq ({MAX_SEQ})")
    return After(int(digits))


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number that is not an integer"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def resolve_cursor(cursor: Cursor, head: int) -> int:
    """The seq a subscription delivers after, given the run's head when it starts."""
    return head if isinstance(cursor, Now) else cursor.seq
