"""The agent's own SSE frames are what the broker's parser reads back."""

from __future__ import annotations

import pytest

from agents.sse import KEEPALIVE, encode_frame, parse_last_event_id
from broker.sse import SSEParser
from models.events import Text, TextData, ToolResult, ToolResultData, parse_event


def test_frame_layout_is_id_then_one_data_line() -> None:
    frame = encode_frame(7, Text(data=TextData(text="Hel")))
    assert frame == b'id: 7\ndata: {"event_type":"text","data":{"text":"Hel"}}\n\n'


def test_newlines_and_unicode_survive_the_round_trip() -> None:
    event = ToolResult(
        data=ToolResultData(tool_use_id="t", output={"rows": [["a\nb\r\nc", "é\u2028"]]})
    )
    parser = SSEParser()
    (parsed,) = parser.feed(encode_frame(1, event) + KEEPALIVE)
    assert parsed.id == "1"
    assert parse_event(parsed.json()) == event


@pytest.mark.parametrize(("header", "cursor"), [(None, 0), ("", 0), ("0", 0), (" 17 ", 17)])
def test_last_event_id_parses_to_a_cursor(header: str | None, cursor: int) -> None:
    assert parse_last_event_id(header) == cursor


@pytest.mark.parametrize("header", ["-1", "abc", "1.5", "²"])
def test_a_bad_last_event_id_is_refused(header: str) -> None:
    with pytest.raises(ValueError, match="Last-Event-ID"):
        parse_last_event_id(header)
