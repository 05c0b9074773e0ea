"""Medians and spreads over a job's runs: pure data in, no services."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.aggregate import JobRuns, Spread, find, summarize  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure  # noqa: E402


def run(*figures: Figure) -> BenchResult:
    return BenchResult("sync-in", {"records": 10}, list(figures))


def test_spread_is_median_lowest_and_highest_of_the_measured_runs() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert Spread.of([4.0, 1.0]) == Spread(2.5, 1.0, 4.0, 2)
    # a run without the measurement (NaN, None) is left out, not counted as zero
    assert Spread.of([float("nan"), 5.0, None, 7.0]) == Spread(6.0, 5.0, 7.0, 2)
    assert Spread.of([float("nan"), None]) is None
    assert Spread.of([]) is None


def test_ratio_is_computed_per_run_then_its_median_taken() -> None:
    # per-run ratios 0.5, 0.9, 0.6 -> median 0.6; the ratio of the medians would be 0.6667
    job = JobRuns("j", [
        run(Figure("rate", 50.0, "records/s", Baseline("bare", 100.0, "records/s"))),
        run(Figure("rate", 90.0, "records/s", Baseline("bare", 100.0, "records/s"))),
        run(Figure("rate", 120.0, "records/s", Baseline("bare", 200.0, "records/s"))),
    ])
    [s] = summarize(job)
    assert s.value == Spread(90.0, 50.0, 120.0, 3)
    assert s.baseline == Spread(100.0, 100.0, 200.0, 3)
    assert s.ratio is not None
    assert s.ratio.median == pytest.approx(0.6)
    assert (s.ratio.low, s.ratio.high) == (pytest.approx(0.5), pytest.approx(0.9))
    assert s.runs == 3


def test_the_same_name_against_two_baselines_stays_two_figures() -> None:
    figures = lambda v: run(Figure("rate", v, "r/s", Baseline("consume", 1000.0, "r/s")),  # noqa: E731
                            Figure("rate", v, "r/s", Baseline("upsert", 100.0, "r/s")))
    summaries = summarize(JobRuns("j", [figures(10.0), figures(30.0), figures(20.0)]))
    assert [(s.baseline_name, s.ratio.median if s.ratio else None) for s in summaries] == [
        ("consume", pytest.approx(0.02)), ("upsert", pytest.approx(0.2))]


def test_baseline_name_is_the_most_common_and_figures_keep_their_first_order() -> None:
    job = JobRuns("j", [
        run(Figure("a", 1.0, "x", Baseline("bound: raw store", 2.0, "x")), Figure("b", 1.0, "MiB")),
        run(Figure("b", 3.0, "MiB"), Figure("a", 1.0, "x", Baseline("bound: upsert", 4.0, "x"))),
        run(Figure("a", 1.0, "x", Baseline("bound: raw store", 3.0, "x")), Figure("c", 9.0, "MiB")),
    ])
    summaries = summarize(job)
    assert [s.name for s in summaries] == ["a", "b", "c"]
    a = find(summaries, "a")
    assert a is not None and a.baseline_name == "bound: raw store"
    c = find(summaries, "c")
    assert c is not None and c.value == Spread(9.0, 9.0, 9.0, 1) and c.ratio is None
    assert find(summaries, "missing") is None
