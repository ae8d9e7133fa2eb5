"""The bench's pure parts: percentiles, summaries over repetitions, exactly-once checks."""

from __future__ import annotations

import math

from agents.bench import bench_text
from broker.bench.client import Reception, emitted_us_of, exactly_once, in_order
from broker.bench.report import Report
from broker.bench.stats import Figures, percentile, summarize


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_summarize_gives_median_min_max_per_figure_in_first_seen_order() -> None:
    reps = []
    for value in (5.0, 1.0, 3.0):
        figures = Figures()
        figures.add("b", value, "ms")
        figures.add("a", value * 10, "ev/s")
        reps.append(figures)
    rows = summarize("s", reps)
    assert [(r.figure, r.median, r.low, r.high, r.unit) for r in rows] == [
        ("b", 3.0, 1.0, 5.0, "ms"),
        ("a", 30.0, 10.0, 50.0, "ev/s"),
    ]


def test_summarize_ignores_nan_and_keeps_a_figure_no_repetition_could_measure() -> None:
    empty, one = Figures(), Figures()
    empty.add_spread("latency", [], "ms")
    one.add_spread("latency", [2.0, 4.0], "ms")
    rows = {r.figure: r for r in summarize("s", [empty, one])}
    assert rows["latency p50"].median == 2.0
    assert rows["latency max"].median == 4.0
    assert math.isnan(summarize("s", [empty])[0].median)
    assert summarize("s", [empty])[0].to_json()["median"] is None


def test_figures_survive_json() -> None:
    figures = Figures(violations=["v"], note="n")
    figures.add("x", 1.5, "ms")
    assert Figures.from_json(figures.to_json()) == figures


def _reception(seqs: list[int], terminal: str | None = "complete") -> Reception:
    return Reception(seqs=seqs, terminal=terminal)


def test_exactly_once_holds_for_one_to_n_ending_terminal() -> None:
    assert exactly_once(_reception([1, 2, 3]), "v") == []


def test_exactly_once_reports_duplicates_gaps_disorder_and_a_missing_end() -> None:
    assert "1 duplicates" in exactly_once(_reception([1, 2, 2, 3]), "v")[0]
    assert exactly_once(_reception([1, 3]), "v")
    assert exactly_once(_reception([2, 1]), "v")
    assert exactly_once(_reception([2, 3]), "v")
    assert exactly_once(_reception([1, 2], terminal=None), "v") == [
        "v: the stream ended without its terminal event"
    ]
    assert in_order(_reception([1, 2], terminal=None), "v") == []


def test_latencies_count_only_stamped_events_emitted_since() -> None:
    reception = Reception(
        seqs=[1, 2, 3], received_us=[1_000, 5_000, 9_000], emitted_us=[None, 4_000, 8_500]
    )
    assert reception.latencies_ms() == [1.0, 0.5]
    assert reception.latencies_ms(since_us=5_000) == [0.5]


def test_ratio_rows_follow_the_latency_rows_they_divide() -> None:
    direct, broker = Figures(), Figures()
    direct.add_spread("latency", [1.0, 2.0], "ms")
    broker.add_spread("latency", [4.0, 10.0], "ms")
    report = Report({}, "16", {}, summarize("latency, flush 0 ms", [broker]))
    report.rows += summarize("direct pipe", [direct])
    report.add_ratios()
    figures = [(r.scenario, r.figure, r.median) for r in report.rows if r.unit == "x"]
    assert figures == [
        ("latency, flush 0 ms", "latency p50 / direct", 4.0),
        ("latency, flush 0 ms", "latency p99 / direct", 5.0),
    ]
    assert report.rows[1].figure == "latency p50 / direct"


def test_the_load_reads_the_emit_time_the_agent_wrote() -> None:
    assert emitted_us_of(bench_text(7, 64, 1_764_470_000_123_456)) == 1_764_470_000_123_456
    assert emitted_us_of(bench_text(7, 64)) is None
    assert emitted_us_of(bench_text(7, 12, 1_764_470_000_123_456)) is None  # cut off
    assert emitted_us_of("hello") is None
