"""JSON as the broker writes it toward clients: compact, UTF-8, line-split safe.

`json.dumps(..., ensure_ascii=False)` leaves U+2028 (LINE SEPARATOR), U+2029
(PARAGRAPH SEPARATOR) and U+0085 (NEXT LINE) raw. They are valid inside a
JSON string, but line-splitting clients (Python's `str.splitlines`, and so
httpx's `iter_lines()`, some JavaScript NDJSON readers) break a line there,
cutting one event into invalid pieces (design 4.2). Escaping them as `\\uXXXX`
is still the same JSON value, and outside strings JSON never contains them,
so a plain replacement after encoding is exact.

`WireJSONResponse` is Starlette's `JSONResponse` with that encoding; the app
uses it for every JSON answer, error bodies included.
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi.responses import JSONResponse

__all__ = ["WireJSONResponse", "dumps", "escape_line_breaks"]

_LINE_BREAKS: Final = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x0085: "\\u0085"}


def escape_line_breaks(text: str) -> str:
    """Encoded JSON text with U+2028, U+2029 and U+0085 written as `\\uXXXX` escapes."""
    return text.translate(_LINE_BREAKS)


def dumps(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII kept except the three line breakers."""
    return escape_line_breaks(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


class WireJSONResponse(JSONResponse):
    """A JSON answer encoded by `dumps` (NaN and infinities refused, as Starlette does)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return escape_line_breaks(text).encode()
