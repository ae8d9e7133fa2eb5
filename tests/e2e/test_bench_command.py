"""`broker bench` from the outside: a subprocess that starts its own services and reports.

Run with the hidden `--tiny` sizes: the table's and the JSON's shape and the
exactly-once checks are asserted, never the timing figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO_LABELS = {
    "latency, flush 0 ms",
    "latency, flush 100 ms",
    "direct pipe",
    "ingest",
    "fan-out, 5 viewers",
    "catch-up, 50 events",
    "idle viewers, 5",
    "cancel",
}


def _bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "bench", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_bench_runs_every_scenario_and_reports_a_table_and_json(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = _bench("--tiny", "--json", str(report_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "broker bench: median of n repetitions" in done.stdout
    assert "exactly-once: held for every viewer of every scenario" in done.stdout
    assert "n/a: no cancel route" not in done.stdout
    report = json.loads(report_path.read_text())
    assert report["exactly_once"] is True and report["violations"] == []
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["cpu_model"]
    assert report["postgres"][0].isdigit()
    assert report["settings"]["mode"] == "tiny"
    assert report["notes"] == {}
    results = report["results"]
    assert {row["scenario"] for row in results} == SCENARIO_LABELS
    for row in results:
        assert set(row) == {"scenario", "figure", "unit", "median", "min", "max", "repetitions"}
        if row["unit"] == "x":  # a ratio of two medians
            continue
        assert len(row["repetitions"]) == 3, row
        if row["median"] is not None:
            assert row["min"] <= row["median"] <= row["max"], row
    figures = {(row["scenario"], row["figure"]) for row in results}
    for expected in [
        ("latency, flush 0 ms", "latency p99"),
        ("latency, flush 0 ms", "latency p50 / direct"),
        ("direct pipe", "latency p50"),
        ("ingest", "events stored"),
        ("ingest", "flushes"),
        ("ingest", "/healthz p99"),
        ("fan-out, 5 viewers", "delivery p99"),
        ("fan-out, 5 viewers", "broker CPU"),
        ("fan-out, 5 viewers", "RSS growth per viewer"),
        ("fan-out, 5 viewers", "DB transactions"),
        ("catch-up, 50 events", "receive all"),
        ("idle viewers, 5", "RSS per viewer"),
        ("cancel", "cancel seen"),
    ]:
        assert expected in figures, expected
    stored = next(r for r in results if r["figure"] == "events stored")
    assert all(value is not None and math.isfinite(value) for value in stored["repetitions"])


def test_bench_refuses_an_unknown_scenario_before_starting_anything() -> None:
    done = _bench("--tiny", "--scenario", "latency", "--scenario", "warp-speed")
    assert done.returncode == 2
    assert "unknown scenario warp-speed" in done.stderr
    assert "latency" in done.stderr  # the known ones are listed
