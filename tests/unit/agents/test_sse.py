"""The agent's own SSE frames are what the broker's parser reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.sse import KEEPALIVE, encode_frame, parse_last_event_id
from broker.web.sse import SSEParser
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


@given(
    texts=st.lists(st.text(), min_size=1, max_size=5),
    cut=st.integers(min_value=1, max_value=7),
)
def test_any_text_survives_any_chunking(texts: list[str], cut: int) -> None:
    events = [Text(data=TextData(text=t)) for t in texts]
    stream = b"".join(encode_frame(i, e) for i, e in enumerate(events, start=1))
    parser = SSEParser()
    parsed = []
    for start in range(0, len(stream), cut):
        parsed += parser.feed(stream[start : start + cut])
    assert [(p.id, parse_event(p.json())) for p in parsed] == [
        (str(i), e) for i, e in enumerate(events, start=1)
    ]
