"""The benchmark report's rendering and the figure format it reads: pure functions, no services."""

from __future__ import annotations

import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.figures import Baseline, BenchResult, Figure, format_ratio, format_value, read_json, write_json  # noqa: E402
from bench.report import Outcome, last_error_line, render_report  # noqa: E402

MACHINE = {"CPU": "Test CPU, 2 cores", "RAM": "24.0 GiB", "Kafka": "4.1.1"}


def table_rows(report: str) -> list[list[str]]:
    """The cells of the figures table, header and separator left out."""
    rows = [ln for ln in report.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows[1:]]


def test_figure_beside_its_baseline_as_a_ratio() -> None:
    result = BenchResult("sync-out", {"events": 100}, [
        Figure("backlog drain, one", 2400.0, "deliveries/s", Baseline("bare HTTP", 3000.0, "records/s")),
        Figure("peak RSS", 140.0, "MiB"),
    ])
    report = render_report("2026-01-01 00:00 UTC", MACHINE, [Outcome("sync-out", result, seconds=12)], "bench/report.py")
    rows = table_rows(report)
    assert rows[0] == ["sync-out: backlog drain, one", "2,400 deliveries/s", "3,000 records/s (bare HTTP)", "0.80×"]
    assert rows[1] == ["sync-out: peak RSS", "140 MiB", "–", "–"]
    assert "- CPU: Test CPU, 2 cores" in report
    assert "- Kafka: 4.1.1" in report
    assert '"events": 100' in report


def test_failed_bench_is_a_row_not_a_crash() -> None:
    ok = BenchResult("end-to-end", {}, [Figure("latency p50", 2873.4, "ms", Baseline("bare p50", 0.5, "ms"))])
    outcomes = [Outcome("sync-in", error="exit status 2: unrecognized arguments: --json"),
                Outcome("end-to-end", ok)]
    rows = table_rows(render_report("now", MACHINE, outcomes, "bench/report.py --quick"))
    assert rows[0][0] == "sync-in: **failed** (exit status 2: unrecognized arguments: --json)"
    assert rows[0][1:] == ["–", "–", "–"]
    assert rows[1] == ["end-to-end: latency p50", "2,873 ms", "0.50 ms (bare p50)", "5,747×"]


def test_no_ratio_without_a_usable_baseline() -> None:
    assert Figure("x", 5.0, "ms", Baseline("zero", 0.0, "ms")).ratio is None
    assert Figure("x", float("nan"), "ms", Baseline("b", 1.0, "ms")).ratio is None
    assert format_ratio(None) == "–"
    assert format_ratio(0.000221) == "0.00022×"
    assert format_ratio(0.05) == "0.050×"
    assert format_ratio(0.8) == "0.80×"
    assert format_value(float("nan"), "ms") == "n/a ms"
    assert format_value(0.4321, "ms") == "0.43 ms"
    assert format_value(12.345, "MiB") == "12.3 MiB"


def test_json_round_trip_keeps_missing_values_missing(tmp_path: Path) -> None:
    result = BenchResult("sync-in", {"records": 10}, [
        Figure("rate", 950.0, "records/s", Baseline("bare consume", 95000.0, "records/s")),
        Figure("p99", float("nan"), "ms", None),
    ])
    path = tmp_path / "out.json"
    write_json(path, result)
    assert '"value": null' in path.read_text()  # JSON has no NaN
    back = read_json(path)
    assert back.bench == "sync-in" and back.params == {"records": 10}
    assert back.figures[0] == result.figures[0]
    assert math.isnan(back.figures[1].value) and back.figures[1].baseline is None
    assert back.figures[0].ratio is not None and abs(back.figures[0].ratio - 0.01) < 1e-12


def test_pipe_in_a_name_does_not_break_the_table() -> None:
    result = BenchResult("b", {}, [Figure("a | b", 1.0, "x")])
    rows = table_rows(render_report("now", {}, [Outcome("b", result)], "c"))
    assert rows[0][0] == "b: a \\| b"


def test_last_error_line_prefers_the_error(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("starting\nusage: sync_in.py [-h]\nsync_in.py: error: unrecognized arguments: --json x\n\n")
    assert last_error_line(log) == "sync_in.py: error: unrecognized arguments: --json x"
    assert last_error_line(tmp_path / "missing.log") == "no log"
