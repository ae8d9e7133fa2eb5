"""Cursors: where in a run a subscription starts (design 4.2).

A cursor is `None` (from the first event), `"now"` (only events after the
current head) or a decimal `k` (events with `seq > k`). Seqs are PostgreSQL
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


def parse_cursor(value: str | None) -> Cursor:
    """A client's cursor, or `InvalidCursor` naming what was wrong with it."""
    if value is None:
        return After(0)
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


def resolve_cursor(cursor: Cursor, head: int) -> int:
    """The seq a subscription delivers after, given the run's head when it starts."""
    return head if isinstance(cursor, Now) else cursor.seq
