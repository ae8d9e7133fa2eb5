"""Pure rules of the Durable Streams protocol: offsets, producers, JSON bodies, SSE."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable.offsets import ZERO, InvalidOffset, offset_of, seq_of
from durable.protocol import (
    ProducerState,
    ProtocolError,
    decide_producer,
    encode_sse,
    json_messages,
    parse_producer,
)


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=10**15))
def test_offsets_map_back_exactly_and_sort_like_seqs(a: int, b: int) -> None:
    assert seq_of(offset_of(a)) == a
    assert (offset_of(a) < offset_of(b)) == (a < b)


def test_offset_sentinels_and_garbage() -> None:
    assert offset_of(0) == ZERO
    assert seq_of("-1") == 0
    for bad in ("", "now", "abc", "1_", "_1", "-2", "1_2_3", "0" * 40 + "_" + "1" * 40):
        with pytest.raises(InvalidOffset):
            seq_of(bad)


def test_producer_decisions() -> None:
    assert decide_producer(None, 0, 0).status == "accepted"
    assert decide_producer(None, 0, 1).status == "sequence_gap"
    state = ProducerState(epoch=2, last_seq=5)
    assert decide_producer(state, 2, 5).status == "duplicate"
    assert decide_producer(state, 2, 3).status == "duplicate"
    assert decide_producer(state, 2, 6).state == ProducerState(2, 6)
    gap = decide_producer(state, 2, 8)
    assert (gap.status, gap.expected_seq) == ("sequence_gap", 6)
    assert decide_producer(state, 1, 0).status == "stale_epoch"
    assert decide_producer(state, 3, 1).status == "invalid_epoch_seq"
    assert decide_producer(state, 3, 0).state == ProducerState(3, 0)


@pytest.mark.parametrize(
    ("pid", "epoch", "seq"),
    [("p", None, "0"), ("", "0", "0"), ("p", "-1", "0"), ("p", "0", "1.5"), ("p", "0", "9" * 20)],
)
def test_producer_headers_are_all_or_none_and_integers(
    pid: str | None, epoch: str | None, seq: str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_producer(pid, epoch, seq)
    assert caught.value.status == 400


def test_json_bodies_flatten_one_level() -> None:
    assert json_messages(b'[1, [2], {"a": 3}]', allow_empty_array=False) == [
        b"1",
        b"[2]",
        b'{"a":3}',
    ]
    assert json_messages(b"[]", allow_empty_array=True) == []
    for body in (b"[]", b"{", b"\xff"):
        with pytest.raises(ProtocolError):
            json_messages(body, allow_empty_array=False)


def test_sse_data_lines_split_every_line_ending() -> None:
    assert encode_sse("a\r\nb\rc\nd") == "data:a\ndata:b\ndata:c\ndata:d\n\n"
