"""The JSON Schema of the event union, as checked into the browser client's folder.

`python -m subscribe.event_schema` rewrites `subscribe/static/events.schema.json`
from `models.events`; a test fails when the checked-in file is stale, and
another when the browser reducer does not handle a type the schema names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.events import event_json_schema

__all__ = ["SCHEMA_PATH", "event_types", "render_schema", "write_schema"]

SCHEMA_PATH = Path(__file__).parent / "static" / "events.schema.json"


def render_schema() -> str:
    """The schema document as written to disk: sorted keys, two-space indent, final newline."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "StreamEvent",
        "description": "One event of a run; generated from models/events.py.",
        **event_json_schema(),
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def event_types(schema: dict[str, Any]) -> set[str]:
    """The `event_type` values a schema document allows (its discriminator's mapping)."""
    return set(schema["discriminator"]["mapping"])


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(render_schema(), encoding="utf-8")


if __name__ == "__main__":
    write_schema()
