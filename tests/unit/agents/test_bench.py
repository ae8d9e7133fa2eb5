"""The bench load: parsed strictly, sized exactly, paced on an absolute schedule."""

from __future__ import annotations

import pytest

from agents.bench import (
    MIN_SLEEP_S,
    BenchLoad,
    bench_events,
    bench_text,
    due_count,
    parse_bench,
)
from models.events import Complete, Text


@pytest.mark.parametrize(
    ("message", "load"),
    [
        ("bench events=1000 rate=500 size=64", BenchLoad(events=1000, rate=500, size=64)),
        ("bench events=3 rate=2.5", BenchLoad(events=3, rate=2.5, size=16)),
        ("  bench   rate=10 events=0  ", BenchLoad(events=0, rate=10, size=16)),
    ],
)
def test_parse_bench_reads_the_load(message: str, load: BenchLoad) -> None:
    assert parse_bench(message) == load


@pytest.mark.parametrize(
    "message",
    [
        "bench",
        "bench events=10",
        "bench rate=10",
        "bench events=10 rate=0",
        "bench events=10 rate=-1",
        "bench events=10 rate=inf",
        "bench events=-1 rate=10",
        "bench events=10 rate=10 size=0",
        "bench events=ten rate=10",
        "bench events=10 rate=10 colour=red",
        "please bench events=10 rate=10",
        "How many benches are in the park?",
    ],
)
def test_parse_bench_refuses_anything_else(message: str) -> None:
    assert parse_bench(message) is None


@pytest.mark.parametrize("size", [1, 8, 9, 16, 64, 1000])
def test_bench_text_is_exactly_size_bytes(size: int) -> None:
    for index in (0, 7, 12345678, 123456789):
        assert len(bench_text(index, size).encode()) == size


def test_due_count_follows_the_absolute_schedule() -> None:
    assert due_count(-0.1, 500, 1000) == 0
    assert due_count(0.0, 500, 1000) == 1
    assert due_count(0.0019, 500, 1000) == 1
    assert due_count(0.002, 500, 1000) == 2
    assert due_count(1.0, 500, 1000) == 501
    assert due_count(60.0, 500, 1000) == 1000


async def test_bench_events_emits_exactly_n_texts_then_complete_without_drift() -> None:
    """With a fake clock whose sleeps overshoot, the schedule still ends on time."""
    now = 0.0
    sleeps: list[float] = []

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        sleeps.append(seconds)
        now += seconds + 0.0007  # every wake-up is late: jitter must not accumulate

    load = BenchLoad(events=1000, rate=500, size=64)
    events = [event async for event in bench_events(load, clock=clock, sleep=sleep)]

    texts = [e for e in events if isinstance(e, Text)]
    assert len(texts) == 1000 and len(events) == 1001
    assert isinstance(events[-1], Complete)
    assert all(len(t.data.text.encode()) == 64 for t in texts)
    assert len({t.data.text for t in texts}) == 1000
    # The last event is due at 999/500 s; lateness per wake-up is not added up (one
    # shortest pause at most, plus one wake-up's lateness).
    assert 999 / 500 <= now < 999 / 500 + MIN_SLEEP_S + 0.002
    # Every pause is at least the shortest one: events due meanwhile go out together.
    assert all(seconds >= MIN_SLEEP_S for seconds in sleeps)
    assert len(sleeps) <= 999 / 500 / MIN_SLEEP_S + 1


async def test_bench_with_zero_events_is_just_complete() -> None:
    events = [e async for e in bench_events(BenchLoad(events=0, rate=10))]
    assert [e.event_type for e in events] == ["complete"]


def test_bench_text_carries_its_emit_time_and_keeps_its_size() -> None:
    text = bench_text(7, 64, 1_764_470_000_123_456)
    assert len(text.encode()) == 64
    assert text.startswith("00000007 t=1764470000123456 ")
    assert bench_text(7, 12, 1_764_470_000_123_456) == "00000007 t=1"  # cut to size


async def test_bench_events_stamp_each_text_with_the_wall_clock() -> None:
    stamps = iter(range(1_000, 1_003))
    load = BenchLoad(events=3, rate=1e6, size=40)
    events = [e async for e in bench_events(load, wall_us=lambda: next(stamps))]
    texts = [e.data.text for e in events if isinstance(e, Text)]
    assert [t.split()[1] for t in texts] == ["t=1000", "t=1001", "t=1002"]
