"""Each goal computed from figures and marked met, not met or not measured: pure data in."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import names  # noqa: E402
from bench.aggregate import JobRuns  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure  # noqa: E402
from bench.goals import (  # noqa: E402
    MET, NOT_MEASURED, NOT_MET, Results, e2e_rate, evaluate, memory_flat, poll_path_p99, push_path_p99,
    sync_in_bound, sync_out_lessen360, sync_out_one)
from bench.plan import full_plan, quick_plan  # noqa: E402

PLAN = full_plan()


def sync_in_run(records: int, rate: float, bound: float, rss: list[float]) -> BenchResult:
    return BenchResult("sync-in", {"records": records, "workers": 2}, [
        Figure(names.SYNC_IN_RATE_VS_BOUND, rate, "records/s", Baseline("bound: bare raw-store bulk insert", bound, "records/s")),
        *(Figure(names.sync_in_worker_rss(i + 1), m, "MiB") for i, m in enumerate(rss)),
    ])


def results(**jobs: list[BenchResult]) -> Results:
    """Results of PLAN; keyword names: headline, small, sync_out, e2e."""
    keys = {"headline": PLAN.headline.name, "small": PLAN.memory_small.name,
            "sync_out": PLAN.sync_out_job().name, "e2e": PLAN.e2e_job().name}
    return Results(PLAN, {keys[k]: JobRuns(keys[k], v) for k, v in jobs.items()})


def test_sync_in_goal_uses_the_median_of_per_run_ratios_at_the_goal_size() -> None:
    met = results(headline=[sync_in_run(100_000, 600, 1000, []), sync_in_run(100_000, 700, 1000, []),
                            sync_in_run(100_000, 500, 1000, [])])
    goal = sync_in_bound(met)
    assert goal.verdict == MET
    assert "0.60×" in goal.measured and "median of 3 runs" in goal.measured
    missed = results(headline=[sync_in_run(100_000, 590, 1000, [])])
    assert sync_in_bound(missed).verdict == NOT_MET


def test_a_run_smaller_than_the_goal_or_a_missing_figure_is_not_measured() -> None:
    small = Results(quick_plan(), {quick_plan().headline.name: JobRuns(quick_plan().headline.name,
                                                                       [sync_in_run(4_000, 900, 1000, [])])})
    goal = sync_in_bound(small)
    assert goal.verdict == NOT_MEASURED
    assert "4,000 records" in goal.measured and "0.90×" in goal.measured
    assert sync_in_bound(results()).verdict == NOT_MEASURED
    assert all(g.verdict == NOT_MEASURED for g in evaluate(results()))


def test_sync_out_goals_read_the_one_worker_drain_of_each_target() -> None:
    run = BenchResult("sync-out", {}, [
        Figure(names.sync_out_drain("one", 1), 3000, "deliveries/s", Baseline("bare HTTP", 5000, "records/s")),
        Figure(names.sync_out_drain("one", 2), 9000, "deliveries/s", Baseline("bare HTTP", 5000, "records/s")),
        Figure(names.sync_out_drain("lessen360", 1), 10000, "deliveries/s", Baseline("bare HTTP", 40000, "records/s")),
    ])
    r = results(sync_out=[run])
    assert sync_out_one(r).verdict == MET  # 0.60
    assert sync_out_lessen360(r).verdict == NOT_MET  # 0.25; the 2-worker drain does not count


def test_memory_growth_worker_by_worker_and_the_ceiling() -> None:
    flat = results(small=[sync_in_run(20_000, 1, 1, [200, 210])], headline=[sync_in_run(100_000, 1, 1, [215, 220])])
    goal = memory_flat(flat)
    assert goal.verdict == MET
    assert "1.07×" in goal.measured  # worker 1: 215 / 200
    grown = results(small=[sync_in_run(20_000, 1, 1, [200, 200])], headline=[sync_in_run(100_000, 1, 1, [200, 230])])
    assert memory_flat(grown).verdict == NOT_MET  # worker 2: 1.15
    too_big = results(small=[sync_in_run(20_000, 1, 1, [290, 290])], headline=[sync_in_run(100_000, 1, 1, [300, 290])])
    assert memory_flat(too_big).verdict == NOT_MET  # within 10 %, but one worker at 300 MiB


def test_end_to_end_rate_against_sync_in_beside_it_or_from_this_report() -> None:
    load = "end-to-end: initial load, source records/s, first raw record → last target delivery"
    beside = BenchResult("end-to-end", {names.E2E_LOAD_RECORDS_PARAM: 20_400}, [
        Figure(load, 400, "records/s", Baseline("sync-in alone, same records", 1000, "records/s"))])
    assert e2e_rate(results(e2e=[beside])).verdict == NOT_MET  # 0.40
    alone = BenchResult("end-to-end", {names.E2E_LOAD_RECORDS_PARAM: 20_400}, [
        Figure(load, 600, "records/s", Baseline("bare consume of the raw topics", 90000, "records/s"))])
    goal = e2e_rate(results(e2e=[alone], small=[sync_in_run(20_000, 1000, 2000, [])]))
    assert goal.verdict == MET and "0.60×" in goal.measured
    small_load = BenchResult("end-to-end", {names.E2E_LOAD_RECORDS_PARAM: 2_000}, alone.figures)
    assert e2e_rate(results(e2e=[small_load], small=[sync_in_run(20_000, 1000, 2000, [])])).verdict == NOT_MEASURED


def test_latency_goals_pick_the_poll_and_push_path_figures() -> None:
    run = BenchResult("end-to-end", {names.E2E_POLL_INTERVAL_PARAM: 2.0}, [
        Figure("latency p50, source change → target receipt, 10 changes/s in bursts", 1500, "ms"),
        Figure("latency p99, source change → target receipt, 10 changes/s in bursts", 2900, "ms"),
        Figure("latency p99, push (ingest) change → target receipt, 100 changes/s", 1000, "ms"),
    ])
    r = results(e2e=[run])
    poll = poll_path_p99(r)
    assert poll.verdict == MET and "3,000 ms" in poll.needs  # 2.9 s ≤ 2 s + 1 s
    assert push_path_p99(r).verdict == NOT_MET  # 1,000 ms is not under 1 s
    slow = BenchResult("end-to-end", {names.E2E_POLL_INTERVAL_PARAM: 1.0}, run.figures[:2])
    assert poll_path_p99(results(e2e=[slow])).verdict == NOT_MET
    assert push_path_p99(results(e2e=[slow])).verdict == NOT_MEASURED
    no_interval = BenchResult("end-to-end", {}, run.figures)
    assert poll_path_p99(results(e2e=[no_interval])).verdict == NOT_MEASURED


def test_path_names_that_say_poll_and_push_are_told_apart() -> None:
    run = BenchResult("end-to-end", {names.E2E_POLL_INTERVAL_PARAM: 2.0}, [
        Figure("end-to-end: p99 source change → target, push path, 100 changes/s", 400, "ms"),
        Figure("end-to-end: p99 source change → target, poll path", 3500, "ms"),
    ])
    r = results(e2e=[run])
    assert push_path_p99(r).verdict == MET
    poll = poll_path_p99(r)
    assert poll.verdict == NOT_MET and "3,500 ms" in poll.measured


def test_push_goal_is_decided_only_at_the_pace_it_is_stated_at() -> None:
    figure = Figure("p99 source change → target, push path, 100 changes/s", 400, "ms")
    at_pace = BenchResult("end-to-end", {names.E2E_PUSH_RATE_PARAM: 97.0}, [figure])
    goal = push_path_p99(results(e2e=[at_pace]))
    assert goal.verdict == MET and "97.0 changes/s" in goal.measured
    slow = BenchResult("end-to-end", {names.E2E_PUSH_RATE_PARAM: 60.0}, [figure])
    assert push_path_p99(results(e2e=[slow])).verdict == NOT_MEASURED
