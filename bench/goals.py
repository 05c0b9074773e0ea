"""The goals of the performance issue, each computed from the report's figures and marked
met, not met or not measured, with the numbers that decide it. A figure that is missing
(a benchmark failed, or does not write it yet) makes its goal "not measured", never an
error; so does a run smaller than the size the goal is stated at. Pure: no services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench import names
from bench.aggregate import JobRuns, Spread, Summary, find, find_prefix, summarize
from bench.figures import format_ratio, format_value
from bench.plan import GOAL_E2E_RECORDS, GOAL_MEMORY_SMALL_RECORDS, GOAL_SYNC_IN_RECORDS, GOAL_WORKERS, Plan

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"

SYNC_IN_SHARE_OF_BOUND = 0.60
ONE_SHARE_OF_BARE = 0.60
LESSEN360_SHARE_OF_BARE = 0.30
E2E_SHARE_OF_SYNC_IN = 0.50
POLL_PATH_SLACK_MS = 1000.0
PUSH_PATH_P99_MS = 1000.0
PUSH_PATH_RATE = 100.0  # changes/s
PUSH_PATH_PACE_SHARE = 0.9  # a push phase slower than this share of the rate does not decide the goal
MEMORY_GROWTH_MAX = 1.10
MEMORY_CEILING_MIB = 300.0


@dataclass(frozen=True)
class Goal:
    title: str
    needs: str  # the threshold, as a reader reads it
    verdict: str  # met | not met | not measured
    measured: str  # the numbers that decide it, or why there are none


@dataclass
class Results:
    """Every job's runs, looked up by the plan's jobs."""

    plan: Plan
    runs: dict[str, JobRuns]

    def summaries(self, job_name: str) -> list[Summary]:
        runs = self.runs.get(job_name)
        return summarize(runs) if runs is not None else []

    def min_param(self, job_name: str, key: str) -> float | None:
        """The smallest value of a numeric parameter over the job's runs (None: never reported)."""
        runs = self.runs.get(job_name)
        values = [v for v in (runs.param_values(key) if runs else []) if isinstance(v, (int, float))]
        return min(values) if values else None


def evaluate(results: Results) -> list[Goal]:
    return [goal(results) for goal in GOALS]


# -- each goal --------------------------------------------------------------------------------
def sync_in_bound(results: Results) -> Goal:
    job = results.plan.headline
    title, needs = f"Sync-in ≥ 60 % of its bound at {GOAL_SYNC_IN_RECORDS:,} records, {GOAL_WORKERS} workers", "≥ 0.60×"
    figure = find(results.summaries(job.name), names.SYNC_IN_RATE_VS_BOUND)
    size = results.min_param(job.name, "records")
    return _ratio_goal(title, needs, figure, SYNC_IN_SHARE_OF_BOUND, _too_small(size, GOAL_SYNC_IN_RECORDS, "records"))


def sync_out_one(results: Results) -> Goal:
    figure = find(results.summaries(results.plan.sync_out_job().name), names.sync_out_drain("one", 1))
    return _ratio_goal("Sync-out ONE ≥ 0.6× bare HTTP, one worker", "≥ 0.60×", figure, ONE_SHARE_OF_BARE)


def sync_out_lessen360(results: Results) -> Goal:
    figure = find(results.summaries(results.plan.sync_out_job().name), names.sync_out_drain("lessen360", 1))
    return _ratio_goal("Sync-out Lessen360 ≥ 0.3× its bare batch rate, one worker", "≥ 0.30×", figure, LESSEN360_SHARE_OF_BARE)


def e2e_rate(results: Results) -> Goal:
    """End to end's rate against sync-in's: from the end-to-end run itself when it measures
    sync-in beside it (a figure whose baseline names sync-in), else sync-in's rate from this
    report's run at the small size with two workers."""
    title = f"End to end ≥ 50 % of sync-in's rate at ≥ {GOAL_E2E_RECORDS:,} source records"
    needs = "≥ 0.50×"
    e2e_name = results.plan.e2e_job().name
    rates = [s for s in results.summaries(e2e_name) if names.E2E_LOAD_RATE_WORDS in s.name]
    if not rates:
        return Goal(title, needs, NOT_MEASURED, "no end-to-end initial-load rate in this run")
    size = results.min_param(e2e_name, names.E2E_LOAD_RECORDS_PARAM)
    too_small = _too_small(size, GOAL_E2E_RECORDS, "source records")
    beside = next((s for s in rates if s.baseline_name and "sync-in" in s.baseline_name.lower()), None)
    if beside is not None:
        return _ratio_goal(title, needs, beside, E2E_SHARE_OF_SYNC_IN, too_small)
    rate = rates[0]
    sync_in = find(results.summaries(results.plan.memory_small.name), names.SYNC_IN_RATE_VS_BOUND)
    if rate.value is None or sync_in is None or sync_in.value is None or sync_in.value.median == 0:
        return Goal(title, needs, NOT_MEASURED, "end-to-end or sync-in rate missing")
    ratio = rate.value.median / sync_in.value.median
    measured = (f"{format_ratio(ratio)}: {format_value(rate.value.median, rate.unit)} end to end against sync-in's "
                f"{format_value(sync_in.value.median, sync_in.unit)} ({results.plan.memory_small.title}, medians)")
    return _verdict(title, needs, ratio >= E2E_SHARE_OF_SYNC_IN, measured, too_small)


def poll_path_p99(results: Results) -> Goal:
    title = "p99 source change → target on the poll path ≤ poll interval + 1 s"
    e2e_name = results.plan.e2e_job().name
    figure = _latency_p99(results.summaries(e2e_name), push=False)
    poll = results.min_param(e2e_name, names.E2E_POLL_INTERVAL_PARAM)
    if poll is None:
        return Goal(title, "≤ poll interval + 1 s", NOT_MEASURED, "the end-to-end run does not report its poll interval")
    limit = poll * 1000 + POLL_PATH_SLACK_MS
    return _at_most_goal(title, f"≤ {format_value(limit, 'ms')} (poll interval {poll:g} s + 1 s)", figure, limit)


def push_path_p99(results: Results) -> Goal:
    """Decided only when the push phase reached (nearly) the pace the goal is stated at."""
    title = f"p99 source change → target on the push (ingest) path < 1 s at {PUSH_PATH_RATE:g} changes/s"
    e2e_name = results.plan.e2e_job().name
    figure = _latency_p99(results.summaries(e2e_name), push=True)
    goal = _at_most_goal(title, "< 1,000 ms", figure, PUSH_PATH_P99_MS, strict=True)
    pace = results.min_param(e2e_name, names.E2E_PUSH_RATE_PARAM)
    if pace is None or goal.verdict == NOT_MEASURED:
        return goal
    reached = f"; pushed at {pace:,.1f} changes/s"
    if pace < PUSH_PATH_RATE * PUSH_PATH_PACE_SHARE:
        return Goal(title, goal.needs, NOT_MEASURED, goal.measured + reached + f", below the goal's {PUSH_PATH_RATE:g}")
    return Goal(title, goal.needs, goal.verdict, goal.measured + reached)


def memory_flat(results: Results) -> Goal:
    """Each sync-in worker's peak at the large size within 10 % of its peak at the small size
    (worker by worker, medians of the runs), and no worker of any run over the ceiling."""
    title = (f"Memory flat: sync-in worker peak RSS at {GOAL_SYNC_IN_RECORDS:,} within 10 % of its peak at "
             f"{GOAL_MEMORY_SMALL_RECORDS:,}; every worker < 300 MiB")
    needs = "≤ 1.10×, < 300 MiB"
    growth = memory_growth(results)
    highest = highest_worker_rss(results)
    if not growth or highest is None:
        return Goal(title, needs, NOT_MEASURED, "sync-in worker peak RSS missing at one of the two sizes")
    worst = max(growth, key=lambda g: g[3])
    measured = (f"largest growth {format_ratio(worst[3])} ({worst[0]}: {format_value(worst[1], 'MiB')} → "
                f"{format_value(worst[2], 'MiB')}); highest worker peak {format_value(highest[1], 'MiB')} ({highest[0]})")
    plan = results.plan
    too_small = (_too_small(results.min_param(plan.headline.name, "records"), GOAL_SYNC_IN_RECORDS, "records")
                 or _too_small(results.min_param(plan.memory_small.name, "records"), GOAL_MEMORY_SMALL_RECORDS, "records"))
    ok = worst[3] <= MEMORY_GROWTH_MAX and highest[1] < MEMORY_CEILING_MIB
    return _verdict(title, needs, ok, measured, too_small)


GOALS: list[Callable[[Results], Goal]] = [
    sync_in_bound, sync_out_one, sync_out_lessen360, e2e_rate, poll_path_p99, push_path_p99, memory_flat]


# -- memory -----------------------------------------------------------------------------------
def memory_growth(results: Results) -> list[tuple[str, float, float, float]]:
    """(worker, median peak MiB at the small size, at the large size, large / small) for each
    sync-in worker number present at both sizes."""
    small = {s.name: s for s in find_prefix(results.summaries(results.plan.memory_small.name), names.WORKER_RSS_PREFIX)}
    large = {s.name: s for s in find_prefix(results.summaries(results.plan.headline.name), names.WORKER_RSS_PREFIX)}
    out = []
    for name in sorted(small.keys() & large.keys()):
        a, b = small[name].value, large[name].value
        if a is not None and b is not None and a.median > 0:
            out.append((f"worker {name.removeprefix(names.WORKER_RSS_PREFIX)}", a.median, b.median, b.median / a.median))
    return out


def highest_worker_rss(results: Results) -> tuple[str, float] | None:
    """The highest peak RSS of any worker in any run: (which, MiB). Sync-in's and sync-out's
    worker figures, and the end-to-end run's per-role peaks of its sync-in/sync-out workers."""
    best: tuple[str, float] | None = None
    for job in results.plan.jobs():
        for s in results.summaries(job.name):
            is_worker = s.name.startswith(names.WORKER_RSS_PREFIX) or (
                s.name.startswith("peak RSS, sync-") and job.bench == "end-to-end")
            if is_worker and s.value is not None and (best is None or s.value.high > best[1]):
                best = (f"{job.title}: {s.name.removeprefix('peak RSS, ')}", s.value.high)
    return best


# -- helpers ----------------------------------------------------------------------------------
def _latency_p99(summaries: list[Summary], push: bool) -> Summary | None:
    """The end-to-end p99 of source change → target on one path: the push path's figure names
    push or ingest; the poll path's is any other source-change p99 (or names poll)."""
    def is_push(name: str) -> bool:
        return "push" in name or "ingest" in name

    candidates = [s for s in summaries if "p99" in s.name and ("source change" in s.name or "poll" in s.name or is_push(s.name))]
    return next((s for s in candidates if is_push(s.name.lower()) == push), None)


def _too_small(size: float | None, wanted: int, what: str) -> str | None:
    """Why a run's size does not decide the goal, or None when it does."""
    if size is None:
        return None
    if size < wanted:
        return f"run at {size:,.0f} {what}, the goal is stated at {wanted:,}"
    return None


def _ratio_goal(title: str, needs: str, figure: Summary | None, at_least: float, too_small: str | None = None) -> Goal:
    if figure is None or figure.ratio is None or figure.value is None or figure.baseline is None:
        return Goal(title, needs, NOT_MEASURED, "figure missing in this run" if figure is None else f"{figure.name}: no ratio")
    spread = f" ({_spread_ratio(figure.ratio)})" if figure.ratio.runs > 1 else ""
    measured = (f"{format_ratio(figure.ratio.median)}{spread}: "
                f"{format_value(figure.value.median, figure.unit)} against {format_value(figure.baseline.median, figure.baseline_unit or '')}"
                f" ({figure.baseline_name}){_runs(figure.ratio)}")
    return _verdict(title, needs, figure.ratio.median >= at_least, measured, too_small)


def _at_most_goal(title: str, needs: str, figure: Summary | None, limit: float, strict: bool = False) -> Goal:
    if figure is None or figure.value is None:
        return Goal(title, needs, NOT_MEASURED, "figure missing in this run" if figure is None else f"{figure.name}: no value")
    v = figure.value
    spread = f"{format_value(v.low, '')}–{format_value(v.high, '')}, median of {v.runs} runs" if v.runs > 1 else "one run"
    measured = f"{format_value(v.median, figure.unit)} ({spread}; {figure.name})"
    ok = v.median < limit if strict else v.median <= limit
    return _verdict(title, needs, ok, measured)


def _verdict(title: str, needs: str, ok: bool, measured: str, too_small: str | None = None) -> Goal:
    if too_small:
        return Goal(title, needs, NOT_MEASURED, f"{measured}; {too_small}")
    return Goal(title, needs, MET if ok else NOT_MET, measured)


def _spread_ratio(s: Spread) -> str:
    return f"{format_ratio(s.low)}–{format_ratio(s.high)}"


def _runs(s: Spread) -> str:
    return f", median of {s.runs} runs" if s.runs > 1 else ", one run"
