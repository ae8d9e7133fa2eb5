"""Unit tests for broker.web.sse: WHATWG SSE parsing rules, chunking independence, encoding."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import FrozenInstanceError, dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.web.sse import (
    ServerSentEvent,
    SSEParser,
    aiter_sse,
    encode_comment,
    encode_event,
    encode_retry,
    iter_sse,
)


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    return list(iter_sse(chunks))


def parse_each_byte(stream: bytes) -> list[ServerSentEvent]:
    return list(iter_sse(stream[i : i + 1] for i in range(len(stream))))


# --- line ends ---------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_lf_cr_and_crlf_are_line_ends(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    expected = [ServerSentEvent(event="e", data="a\nb"), ServerSentEvent(data="c")]
    assert parse(stream) == expected
    assert parse_each_byte(stream) == expected


def test_mixed_line_ends_in_one_stream() -> None:
    assert parse(b"data: a\rdata: b\r\ndata: c\n\r\n") == [ServerSentEvent(data="a\nb\nc")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # If the LF were a second line end, the blank line would dispatch "a" alone.
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [ServerSentEvent(data="a\nb")]


def test_lone_cr_at_chunk_end_does_not_dispatch_prematurely() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # completes the CRLF, is not a blank line
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"\r\n") == [ServerSentEvent(data="a\nb")]
    assert parser.feed(b"\n") == []  # a new, harmless blank line: nothing buffered
    assert parser.close() == []


def test_cr_terminated_blank_line_dispatches_without_waiting_for_next_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [ServerSentEvent(data="a")]
    # The LF that may follow belongs to that CR; it must not start anything new.
    assert parser.feed(b"\ndata: b\r\r") == [ServerSentEvent(data="b")]


def test_only_an_lf_directly_after_cr_is_swallowed() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\n") == [ServerSentEvent(data="a")]
    # A chunk without any line end between the CR and a later LF ends the CRLF chance.
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"data: c") == []
    assert parser.feed(b"\n\n") == [ServerSentEvent(data="b\nc")]


# --- decoding ----------------------------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\n") == [ServerSentEvent(data="a")]


def test_leading_bom_split_across_chunks_is_stripped() -> None:
    assert parse(b"", b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [ServerSentEvent(data="a")]


def test_only_one_leading_bom_is_stripped() -> None:
    # A second BOM makes the first line's field name "\ufeffdata": an unknown field.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ServerSentEvent(data="b")]


def test_bom_after_stream_start_is_data() -> None:
    assert parse(b"data: a\n\n", b"data: \xef\xbb\xbfb\n\n") == [
        ServerSentEvent(data="a"),
        ServerSentEvent(data="\ufeffb"),
    ]
    # Also when it happens to open a later chunk.
    assert parse(b"data: ", b"\xef\xbb\xbfb\n\n") == [ServerSentEvent(data="\ufeffb")]


def test_multibyte_character_split_across_chunks_decodes() -> None:
    encoded = "data: é€😀\n\n".encode()
    assert parse_each_byte(encoded) == [ServerSentEvent(data="é€😀")]
    emoji_at = encoded.index("😀".encode())
    assert parse(encoded[: emoji_at + 2], encoded[emoji_at + 2 :]) == [ServerSentEvent(data="é€😀")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse(b"data: a\xffb\n\n") == [ServerSentEvent(data="a\ufffdb")]


def test_unicode_line_separators_are_not_sse_line_ends() -> None:
    data = "a\u2028b\x85c\x0bd\x0ce\x1cf"
    assert parse(f"data: {data}\n\n".encode()) == [ServerSentEvent(data=data)]


# --- fields ------------------------------------------------------------------------------


def test_comment_lines_are_ignored() -> None:
    assert parse(b": hello\ndata: a\n:\n: data: b\n\n") == [ServerSentEvent(data="a")]


def test_comment_only_block_dispatches_nothing() -> None:
    assert parse(b": keepalive\n\n") == []


def test_field_without_colon_is_whole_line_name_with_empty_value() -> None:
    assert parse(b"data\ndata\n\n") == [ServerSentEvent(data="\n")]
    assert parse(b"data: a\nevent\n\n") == [ServerSentEvent(event="message", data="a")]


def test_only_one_leading_space_after_colon_is_removed() -> None:
    assert parse(b"data:  two\nevent:   three\n\n") == [
        ServerSentEvent(event="  three", data=" two")
    ]


def test_value_without_space_after_colon_is_kept_whole() -> None:
    assert parse(b"data:a\nid:7\n\n") == [ServerSentEvent(data="a", id="7")]


def test_colon_in_value_is_kept() -> None:
    assert parse(b"data: a: b:c\n\n") == [ServerSentEvent(data="a: b:c")]


def test_multiline_data_joined_with_lf_and_trailing_lf_removed() -> None:
    assert parse(b"data: a\ndata:\ndata: b\ndata\n\n") == [ServerSentEvent(data="a\n\nb\n")]


def test_single_empty_data_line_dispatches_event_with_empty_data() -> None:
    assert parse(b"data:\n\n") == [ServerSentEvent(data="")]


def test_event_type_applies_to_its_event_only() -> None:
    assert parse(b"event: a\ndata: 1\n\ndata: 2\n\n") == [
        ServerSentEvent(event="a", data="1"),
        ServerSentEvent(event="message", data="2"),
    ]


def test_empty_event_field_means_message() -> None:
    assert parse(b"event: a\nevent:\ndata: 1\n\n") == [ServerSentEvent(event="message", data="1")]


def test_last_event_field_in_block_wins() -> None:
    assert parse(b"event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n") == [
        ServerSentEvent(event="b", data="x", id="2")
    ]


def test_id_is_none_until_set() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\n") == [ServerSentEvent(data="a", id=None)]
    assert parser.last_event_id is None


def test_id_persists_across_subsequent_events() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\ndata: d\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "2"), ("d", "2")]
    assert parser.last_event_id == "2"


def test_empty_id_resets_to_empty_string_not_none() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 1\ndata: a\n\nid\ndata: b\n\nid:\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "", ""]
    assert parser.last_event_id == ""


def test_id_containing_nul_is_ignored() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]
    assert parser.last_event_id == "1"


def test_retry_with_ascii_digits_sets_reconnection_time() -> None:
    parser = SSEParser()
    assert parser.retry is None
    assert parser.feed(b"retry: 3000\ndata: a\n\n") == [ServerSentEvent(data="a", retry=3000)]
    assert parser.retry == 3000
    assert parser.feed(b"retry: 0\n\n") == []
    assert parser.retry == 0


@pytest.mark.parametrize(
    "value",
    [b"", b"3.5", b"-1", b"+1", b"1e3", b" 100", b"100 ", b"ten", "١٢".encode(), "²".encode()],
)
def test_retry_without_only_ascii_digits_is_ignored(value: bytes) -> None:
    parser = SSEParser()
    parser.feed(b"retry: 5\n\n")
    assert parser.feed(b"retry: " + value + b"\ndata: a\n\n") == [ServerSentEvent(data="a")]
    assert parser.retry == 5


def test_event_retry_is_reported_only_for_its_own_block() -> None:
    parser = SSEParser()
    events = parser.feed(b"retry: 10\ndata: a\n\ndata: b\n\nretry: 20\n\ndata: c\n\n")
    assert [e.retry for e in events] == [10, None, None]
    assert parser.retry == 20


def test_unknown_fields_are_ignored() -> None:
    assert parse(b"foo: bar\nData: x\nDATA\n data: y\ndata: a\n\n") == [ServerSentEvent(data="a")]


def test_blank_line_without_data_dispatches_nothing_but_id_is_kept() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 7\n\n") == []
    assert parser.last_event_id == "7"
    assert parser.feed(b"data: a\n\n") == [ServerSentEvent(data="a", id="7")]


def test_blank_line_without_data_resets_event_type() -> None:
    assert parse(b"event: a\n\ndata: x\n\n") == [ServerSentEvent(event="message", data="x")]


def test_consecutive_blank_lines_dispatch_once() -> None:
    assert parse(b"data: a\n\n\n\n") == [ServerSentEvent(data="a")]


# --- end of stream -----------------------------------------------------------------------


def test_close_discards_incomplete_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\ndata: b\n") == []
    assert parser.close() == []


def test_last_complete_event_before_truncated_one_is_still_delivered() -> None:
    assert parse(b"data: a\n\ndata: b\n") == [ServerSentEvent(data="a")]
    assert parse(b"data: a\n\ndata: b\r\n", b"data: c") == [ServerSentEvent(data="a")]


def test_final_line_without_terminator_is_incomplete() -> None:
    assert parse(b"data: a") == []
    assert parse(b"data: a\n\ndata: b") == [ServerSentEvent(data="a")]
    # The "blank line" is missing too: a final LF ends the data line, not the event.
    assert parse(b"data: a\n") == []


def test_truncated_final_multibyte_character_is_discarded_with_its_line() -> None:
    assert parse(b"data: a\n\ndata: \xf0\x9f") == [ServerSentEvent(data="a")]


def test_id_of_truncated_event_is_not_committed() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n") == [ServerSentEvent(data="a", id="1")]
    assert parser.close() == []
    # Resuming from here must re-request event 2, not skip it.
    assert parser.last_event_id == "1"


def test_parser_is_reusable_after_close_and_keeps_id_and_retry() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 250\nid: 1\ndata: a\n\nid: 2\ndata: trunc")
    parser.close()
    # A fresh stream: its BOM is stripped and nothing of the truncated event leaks in.
    assert parser.feed(b"\xef\xbb\xbf\ndata: b\n\n") == [ServerSentEvent(data="b", id="1")]
    assert parser.last_event_id == "1"
    assert parser.retry == 250


def test_feeding_empty_chunks_is_harmless() -> None:
    parser = SSEParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\n") == [ServerSentEvent(data="a")]


# --- scale -------------------------------------------------------------------------------


def test_many_events_in_one_chunk() -> None:
    stream = b"".join(encode_event(str(i), id=i) for i in range(20_000))
    events = parse(stream)
    assert len(events) == 20_000
    assert events[-1] == ServerSentEvent(data="19999", id="19999")


def test_long_line_in_many_small_chunks() -> None:
    # Linear joining of the pending line matters here: 20 000 chunks for one 2 MB line.
    payload = "x" * 2_000_000
    stream = encode_event(payload)
    chunks = [stream[i : i + 100] for i in range(0, len(stream), 100)]
    assert parse(*chunks) == [ServerSentEvent(data=payload)]


# --- event object ------------------------------------------------------------------------


def test_server_sent_event_defaults_and_is_frozen() -> None:
    event = ServerSentEvent()
    assert (event.event, event.data, event.id, event.retry) == ("message", "", None, None)
    with pytest.raises(FrozenInstanceError):
        event.data = "x"  # type: ignore[misc]


def test_json_decodes_data() -> None:
    (event,) = parse(b'data: {"a": [1,\ndata: 2]}\n\n')
    assert event.json() == {"a": [1, 2]}


# --- iteration helpers -------------------------------------------------------------------


async def test_aiter_sse_over_async_generator() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"id: 1\nevent: e\r", b"\ndata: \xf0\x9f", b"\x98\x80\r", b"\n\r", b"\n"):
            yield chunk
        yield b"data: truncated"

    assert [event async for event in aiter_sse(chunks())] == [
        ServerSentEvent(event="e", data="😀", id="1")
    ]


def test_iter_sse_is_lazy() -> None:
    def chunks() -> Iterable[bytes]:
        yield b"data: a\n\n"
        raise AssertionError("read past the first event")

    assert next(iter(iter_sse(chunks()))) == ServerSentEvent(data="a")


# --- encoding ----------------------------------------------------------------------------


def test_encode_event_wire_format() -> None:
    assert encode_event("a\nb", id=3, event="e", retry=10) == (
        b"id: 3\nevent: e\nretry: 10\ndata: a\ndata: b\n\n"
    )
    assert encode_event("") == b"data: \n\n"


@pytest.mark.parametrize(
    ("data", "kwargs"),
    [
        ("hello", {}),
        ("", {}),
        (" leading space", {"id": " spaced id", "event": " spaced"}),
        ("multi\nline\n\ndata\n", {"id": 42}),
        ('{"json": "é😀"}', {"id": "", "event": "update", "retry": 1500}),
        ("\ufeffbom inside", {"id": "a:b", "event": "e:f"}),
    ],
)
def test_encode_event_round_trips(data: str, kwargs: dict[str, str | int]) -> None:
    (event,) = parse(encode_event(data, **kwargs))  # type: ignore[arg-type]
    assert event.data == data
    assert event.id == (str(kwargs["id"]) if "id" in kwargs else None)
    assert event.event == (kwargs.get("event") or "message")
    assert event.retry == kwargs.get("retry")


def test_encode_event_normalizes_cr_and_crlf_in_data_to_lf() -> None:
    assert encode_event("a\rb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"
    assert parse(encode_event("a\rb\r\nc")) == [ServerSentEvent(data="a\nb\nc")]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n"])
@pytest.mark.parametrize("field", ["id", "event"])
def test_encode_event_rejects_line_breaks_in_id_and_event(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_event("x", **{field: bad})  # type: ignore[arg-type]


def test_encode_event_rejects_nul_in_id() -> None:
    with pytest.raises(ValueError, match="U\\+0000"):
        encode_event("x", id="a\0b")


def test_encode_event_rejects_negative_retry() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_event("x", retry=-1)


def test_encode_comment() -> None:
    assert encode_comment("keepalive") == b": keepalive\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_comment("a\nb\r\n\rc") == b": a\n: b\n:\n: c\n\n"
    assert parse(encode_comment("a\nb") + encode_event("x")) == [ServerSentEvent(data="x")]


def test_encode_retry() -> None:
    assert encode_retry(3000) == b"retry: 3000\n\n"
    parser = SSEParser()
    assert parser.feed(encode_retry(3000)) == []
    assert parser.retry == 3000
    with pytest.raises(ValueError, match="non-negative"):
        encode_retry(-5)


def test_an_opening_block_with_an_id_sets_the_last_event_id_without_an_event() -> None:
    assert encode_retry(1000, id=7) == b"retry: 1000\nid: 7\n\n"
    parser = SSEParser()
    assert parser.feed(encode_retry(1000, id=7)) == []
    assert (parser.last_event_id, parser.retry) == ("7", 1000)
    # The next event's own id replaces it, as for any event.
    assert parser.feed(encode_event("x", id=8)) == [ServerSentEvent(data="x", id="8")]
    assert parser.last_event_id == "8"
    with pytest.raises(ValueError, match="CR or LF"):
        encode_retry(1000, id="1\nevent: x")


# --- property: any chunking of any encoded stream parses to the same events --------------

_SPECIAL_CHARS = [
    "é",
    "€",
    "😀",
    "👩",
    "\u200d",
    "💻",
    "\u2028",
    "\x85",
    "\ufeff",
    "\ufffd",
    " ",
    ":",
]


def _text(*, exclude: str) -> st.SearchStrategy[str]:
    return st.text(
        st.one_of(
            st.characters(codec="utf-8", exclude_characters=exclude),
            st.sampled_from(_SPECIAL_CHARS),
        ),
        max_size=12,
    )


@dataclass(frozen=True)
class _Spec:
    data: str
    id: str | None
    event: str | None
    retry: int | None
    comment: str | None


_specs = st.lists(
    st.builds(
        _Spec,
        data=st.lists(_text(exclude="\r\n"), min_size=1, max_size=4).map("\n".join),
        id=st.none() | _text(exclude="\r\n\0"),
        event=st.none() | _text(exclude="\r\n").filter(bool),
        retry=st.none() | st.integers(min_value=0, max_value=10**12),
        comment=st.none() | _text(exclude="\r\n"),
    ),
    max_size=8,
)


def _mix_line_ends(stream: bytes, data: st.DataObject) -> bytes:
    """A different line end per line (None above): exercises CR/LF state across lines."""
    out: list[bytes] = []
    previous = b""
    for line in stream.split(b"\n")[:-1]:
        # CR then an empty LF-terminated line would read as one CRLF: not the same stream.
        choices = [b"\r", b"\r\n"] if previous == b"\r" and not line else [b"\n", b"\r", b"\r\n"]
        previous = data.draw(st.sampled_from(choices), label="line end")
        out += (line, previous)
    return b"".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=_specs,
    eol=st.sampled_from([b"\n", b"\r", b"\r\n", None]),
    bom=st.booleans(),
    data=st.data(),
)
def test_any_chunking_yields_the_encoded_events(
    specs: list[_Spec], eol: bytes | None, bom: bool, data: st.DataObject
) -> None:
    blocks: list[bytes] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    for spec in specs:
        if spec.comment is not None:
            blocks.append(encode_comment(spec.comment))
        blocks.append(encode_event(spec.data, id=spec.id, event=spec.event, retry=spec.retry))
        if spec.id is not None:
            last_id = spec.id
        expected.append(
            ServerSentEvent(
                event=spec.event or "message", data=spec.data, id=last_id, retry=spec.retry
            )
        )
    # The encoder writes LF only and no value contains CR/LF, so this swaps every line end.
    stream = b"".join(blocks)
    stream = stream.replace(b"\n", eol) if eol is not None else _mix_line_ends(stream, data)
    if bom:
        stream = b"\xef\xbb\xbf" + stream

    splits = set(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="splits"))
    if data.draw(st.booleans(), label="split after every CR"):
        splits.update(i + 1 for i, byte in enumerate(stream) if byte == 0x0D)
    if data.draw(st.booleans(), label="split inside every multi-byte character"):
        splits.update(i for i, byte in enumerate(stream) if 0x80 <= byte < 0xC0)
    bounds = [0, *sorted(splits), len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert b"".join(chunks) == stream

    assert parse(stream) == expected
    assert parse(*chunks) == expected
    assert parse_each_byte(stream) == expected


@settings(max_examples=200, deadline=None)
@given(
    data=st.text(st.characters(codec="utf-8")),
    id=st.none() | st.integers() | _text(exclude="\r\n\0"),
)
def test_encode_event_round_trips_any_data_modulo_line_end_normalization(
    data: str, id: int | str | None
) -> None:
    (event,) = parse(encode_event(data, id=id))
    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert event.id == (None if id is None else str(id))
