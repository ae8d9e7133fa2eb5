"""The browser client's JavaScript: its Node unit tests, and its parity with `models.events`.

The reducer must handle every event type of the checked-in JSON Schema, and
the checked-in schema must be what `models.events` generates today.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from models.events import parse_event
from subscribe.event_schema import SCHEMA_PATH, event_types, render_schema

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "subscribe" / "static"

# One valid example of each event type; the parity test demands one per schema type.
EXAMPLES: dict[str, dict[str, Any]] = {
    "run_started": {"run_id": "r1", "thread_id": "t1"},
    "reasoning_text": {"text": "thinking"},
    "text": {"text": "Hello"},
    "tool_use": {"tool_use_id": "q1", "name": "query", "input": {"sql": "SELECT 1"}},
    "tool_stream": {"tool_use_id": "q1", "text": "running"},
    "tool_result": {"tool_use_id": "q1", "output": {"rows": [[1]]}, "is_error": False},
    "message": {"message": {"role": "assistant", "content": "Hello"}},
    "complete": {"new_messages": [{"role": "assistant", "content": "Hello"}]},
    "error": {"error": "boom", "error_type": "agent_error"},
    "cancelled": {"by": "owner"},
}

# For every event, from the state after `run_started`: which types left the state unchanged.
_UNHANDLED_SCRIPT = """
import { initialState, reduce } from "./reducer.js";
const events = JSON.parse(process.argv[1]);
const strip = (state) => JSON.stringify({ ...state, lastSeq: 0 });
const started = reduce(initialState(), { seq: 1, event_type: "run_started",
                                         data: { run_id: "r0", thread_id: "t0" } });
const unhandled = [];
for (const [type, data] of Object.entries(events)) {
  const before = type === "run_started" ? initialState() : started;
  const after = reduce(before, { seq: 2, event_type: type, data, ts: "t" });
  if (strip(after) === strip(before)) unhandled.push(type);
}
console.log(JSON.stringify(unhandled));
"""


def _node() -> str:
    node = shutil.which("node")
    assert node is not None, "Node.js (>= 20) is needed for the browser client's tests"
    return node


def test_node_unit_tests_of_the_parser_reducer_and_client_pass() -> None:
    result = subprocess.run(
        [_node(), "--test", "--test-reporter=tap", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", result.stdout, re.MULTILINE))
    assert int(counts["tests"]) > 0, result.stdout[-2000:]
    assert int(counts["fail"]) == 0
    assert counts["pass"] == counts["tests"]


def test_the_checked_in_event_schema_is_current() -> None:
    on_disk = SCHEMA_PATH.read_text(encoding="utf-8")
    assert on_disk == render_schema(), (
        "subscribe/static/events.schema.json is stale: run `python -m subscribe.event_schema`"
    )


def test_the_examples_cover_the_schema_and_are_valid_events() -> None:
    schema_types = event_types(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert set(EXAMPLES) == schema_types
    for event_type, data in EXAMPLES.items():
        parse_event({"event_type": event_type, "data": data})


def test_the_reducer_changes_its_state_for_every_type_in_the_schema() -> None:
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", _UNHANDLED_SCRIPT, json.dumps(EXAMPLES)],
        cwd=STATIC,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_parity_check_catches_a_type_the_reducer_ignores() -> None:
    # Bad input for the check itself: an unknown type must be reported, not pass silently.
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", _UNHANDLED_SCRIPT, json.dumps({"sparkle": {}})],
        cwd=STATIC,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["sparkle"]
