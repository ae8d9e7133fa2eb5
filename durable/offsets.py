"""Offsets: opaque, sortable strings built from a stream's seq, and back.

A stream's messages are numbered 1, 2, ... (seq, contiguous); the offset
*after* message `n` is `0000000000000000_<n as 16 digits>`, so offsets sort as
strings in the order of the stream, offset 0 (`ZERO`) is an empty stream,
and `seq_of(offset_of(n)) == n` exactly. A run's event seq maps the same way.
The protocol's sentinels are `-1` (from the start) and `now` (the tail).
"""

from __future__ import annotations

import re

__all__ = ["BEFORE_FIRST", "MAX_SEQ", "NOW", "ZERO", "InvalidOffset", "offset_of", "seq_of"]

BEFORE_FIRST = "-1"
NOW = "now"
_WIDTH = 16
ZERO = f"{0:0{_WIDTH}d}_{0:0{_WIDTH}d}"
_PATTERN = re.compile(r"^(\d+)_(\d+)$")
MAX_SEQ = 2**63 - 1
"""The largest seq an offset may name (a PostgreSQL bigint)."""


class InvalidOffset(ValueError):
    """An offset string that is neither a sentinel nor `<digits>_<digits>`."""


def offset_of(seq: int) -> str:
    """The offset just after message `seq` (0 = before the first message)."""
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    return f"{0:0{_WIDTH}d}_{seq:0{_WIDTH}d}"


def seq_of(offset: str) -> int:
    """The seq of the last message before `offset`; `-1` is 0.

    InvalidOffset for anything else, or a seq above `MAX_SEQ`.
    """
    if offset == BEFORE_FIRST:
        return 0
    match = _PATTERN.match(offset) if len(offset) <= 64 else None
    if match is None or int(match.group(2)) > MAX_SEQ:
        raise InvalidOffset(f"invalid offset {offset[:80]!r}")
    return int(match.group(2))
