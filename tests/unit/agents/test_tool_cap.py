"""What one tool result may put into the model's context and the stream is bounded."""

from __future__ import annotations

import json
from typing import Any

from agents.tools import CUT_MARKER, TOOL_RESULT_MAX_BYTES, cap_result


def _size(result: dict[str, Any]) -> int:
    return len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())


def test_a_small_result_passes_unchanged() -> None:
    result = {"columns": ["id", "name"], "rows": [[1, "a"], [2, None]], "truncated": False}
    assert cap_result(result) == result


def test_many_rows_are_cut_to_the_byte_budget_and_say_so() -> None:
    rows = [[n, "x" * 100] for n in range(10_000)]  # about 1.1 MB
    capped = cap_result({"columns": ["n", "pad"], "rows": rows, "truncated": False})
    assert capped["truncated"] is True
    assert 0 < len(capped["rows"]) < len(rows)
    assert capped["rows"] == rows[: len(capped["rows"])]  # a prefix, in order
    assert _size(capped) <= TOOL_RESULT_MAX_BYTES


def test_a_huge_cell_is_cut_with_a_marker() -> None:
    rows = [[n, "é" * 5_000_000] for n in range(10)]  # ten 10 MB cells
    capped = cap_result({"columns": ["n", "blob"], "rows": rows, "truncated": False})
    assert capped["truncated"] is True
    assert all(row[1].endswith(CUT_MARKER) and len(row[1]) == 2_000 for row in capped["rows"])
    assert _size(capped) <= TOOL_RESULT_MAX_BYTES


def test_a_broker_side_truncation_is_kept_and_limits_are_exact() -> None:
    assert cap_result({"columns": ["a"], "rows": [[1]], "truncated": True})["truncated"] is True
    row = ["y" * 50]
    budget = _size({"columns": ["a"], "rows": [row], "truncated": True})
    fits = cap_result({"columns": ["a"], "rows": [row, row]}, max_bytes=budget)
    assert fits == {"columns": ["a"], "rows": [row], "truncated": True}
    assert cap_result({"columns": ["a"], "rows": [row]}, max_bytes=budget - 1)["rows"] == []
