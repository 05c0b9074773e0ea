"""The benchmark report's sections and the figure format it reads: pure functions, no services."""

from __future__ import annotations

import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import names  # noqa: E402
from bench.aggregate import JobRuns  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure, format_ratio, format_value, read_json, write_json  # noqa: E402
from bench.goals import Goal, Results  # noqa: E402
from bench.plan import full_plan  # noqa: E402
from bench.render import RunLine, render_report  # noqa: E402
from bench.report import last_error_line  # noqa: E402

MACHINE = {"CPU": "Test CPU, 2 cores", "RAM": "24.0 GiB", "Kafka": "4.1.1"}
PLAN = full_plan()


def rows_of(report: str, section: str) -> list[list[str]]:
    """The cells of the table under `## section`, header and separator left out."""
    body = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in body.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip().removeprefix("| ").removesuffix(" |").split(" | ")] for ln in rows[1:]]


def drain(target: str, workers: int, rate: float, bare: float) -> Figure:
    return Figure(names.sync_out_drain(target, workers), rate, "deliveries/s", Baseline("bare HTTP", bare, "records/s"))


def sync_in(rate: float, bound: float, rss: list[float] = []) -> BenchResult:  # noqa: B006 - read only
    return BenchResult("sync-in", {"records": 20_000}, [
        Figure(names.SYNC_IN_RATE_VS_BOUND, rate, "records/s", Baseline("bound: bare raw-store bulk insert", bound, "records/s")),
        *(Figure(names.sync_in_worker_rss(i + 1), m, "MiB") for i, m in enumerate(rss))])


def report(runs: dict[str, list[BenchResult]], goals: list[Goal] | None = None, failures: dict[str, list[str]] | None = None,
           lines: list[RunLine] | None = None) -> str:
    jobs = {name: JobRuns(name, results, (failures or {}).get(name, [])) for name, results in runs.items()}
    for name, why in (failures or {}).items():
        jobs.setdefault(name, JobRuns(name, [], why))
    return render_report("2026-01-01 00:00 UTC", "bench/report.py", MACHINE, Results(PLAN, jobs), goals or [], lines or [])


def test_scale_out_table_has_a_column_per_worker_count_with_spread_and_ratio() -> None:
    out = report({PLAN.sync_in_job(20_000, 1).name: [sync_in(500, 1000), sync_in(700, 1000), sync_in(600, 1000)],
                  PLAN.sync_in_job(20_000, 2).name: [sync_in(900, 1000)],
                  PLAN.sync_out_job().name: [BenchResult("sync-out", {}, [drain("one", 1, 2000, 5000), drain("one", 4, 2500, 5000)])]})
    rows = rows_of(out, "Scale-out: 1, 2 and 4 workers")
    assert rows[0][1:] == ["600 (500–700), 0.60×", "900, 0.90×", "not measured"]
    assert rows[1][1:] == ["2,000, 0.40×", "not measured", "2,500, 0.50×"]
    assert len(rows) == 2  # no Lessen360 figures, no Lessen360 row
    assert "2 cores, shared with Kafka, PostgreSQL and FerretDB" in out


def test_every_figure_with_median_spread_baseline_and_per_run_ratio() -> None:
    job = PLAN.sync_out_job()
    out = report({job.name: [BenchResult("sync-out", {"events": 100}, [drain("one", 1, r, b), Figure("peak RSS, largest worker", m, "MiB")])
                             for r, b, m in ((2400, 3000, 140), (2000, 4000, 150), (3000, 3000, 145))]})
    rows = [r for r in rows_of(out, "All figures") if r[0] == job.title]
    assert rows[0] == [job.title, "backlog drain, one, 1 worker", "2,400 deliveries/s", "2,000–3,000 (3 runs)",
                       "3,000 records/s (bare HTTP)", "0.80× (0.50×–1.00×)"]
    assert rows[1] == [job.title, "peak RSS, largest worker", "145 MiB", "140–150 (3 runs)", "–", "–"]
    assert "- CPU: Test CPU, 2 cores" in out and "- Kafka: 4.1.1" in out
    assert '"events": 100' in out


def test_a_job_without_results_is_a_row_with_the_reason_not_a_crash() -> None:
    out = report({}, failures={PLAN.e2e_job().name: ["run 1: exit status 2: unrecognized arguments: --json"]},
                 lines=[RunLine(PLAN.e2e_job().name, 1, False, 3.0, "bench/end_to_end.py", "exit status 2")])
    rows = rows_of(out, "All figures")
    e2e = next(r for r in rows if r[0] == "end-to-end")
    assert e2e[1] == "**no figures** (run 1: exit status 2: unrecognized arguments: --json)"
    assert "- end-to-end, run 1: **failed**: exit status 2 in 3 s" in out
    assert "1 run, 0 minutes in all." in out
    assert "Each figure is the median of 3 runs of its job" in out
    headline = next(r for r in rows if r[0] == PLAN.headline.title)
    assert headline[1] == "**no figures** (not run)"


def test_goals_table_marks_each_verdict_and_counts_the_met() -> None:
    goals = [Goal("A", "≥ 0.60×", "met", "0.70×"), Goal("B | C", "< 1 s", "not met", "2 s"),
             Goal("D", "≤ 1.10×", "not measured", "figure missing")]
    out = report({}, goals)
    assert "1 of 3 met." in out
    assert rows_of(out, "Goals") == [["A", "≥ 0.60×", "**met**", "0.70×"], ["B \\| C", "< 1 s", "**not met**", "2 s"],
                                     ["D", "≤ 1.10×", "not measured", "figure missing"]]


def test_memory_table_worker_by_worker() -> None:
    out = report({PLAN.memory_small.name: [sync_in(1, 1, [200, 180])], PLAN.headline.name: [sync_in(1, 1, [230, 310])]})
    assert rows_of(out, "Memory") == [["sync-in worker 1", "200 MiB", "230 MiB", "1.15×", "yes"],
                                      ["sync-in worker 2", "180 MiB", "310 MiB", "1.72×", "**no**"]]
    assert "Highest peak RSS of any worker in any run: 310 MiB" in out


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


def test_last_error_line_prefers_the_error(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("starting\nusage: sync_in.py [-h]\nsync_in.py: error: unrecognized arguments: --json x\n\n")
    assert last_error_line(log) == "sync_in.py: error: unrecognized arguments: --json x"
    assert last_error_line(tmp_path / "missing.log") == "no log"


def test_render_only_reads_the_runs_an_earlier_run_left(tmp_path: Path) -> None:
    from bench.plan import quick_plan
    from bench.report import read_plan_logs

    plan = quick_plan()
    write_json(tmp_path / "sync-out-run1.json", BenchResult("sync-out", {}, [drain("one", 1, 100.0, 400.0)]))
    results, lines = read_plan_logs(plan, tmp_path)
    assert [s.name for s in results.summaries("sync-out")] == ["backlog drain, one, 1 worker"]
    assert [line.ok for line in lines if line.job == "sync-out"] == [True]
    assert results.runs[plan.headline.name].failures == ["run 1: no usable sync-in-4000-w2-run1.json (FileNotFoundError)"]
