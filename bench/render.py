"""bench/REPORT.md from the results: the machine, the goals marked met or not, sync-in and
sync-out with 1, 2 and 4 workers, memory, every figure with its median, spread, baseline
and ratio, and the runs. Pure: everything it shows is passed in."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench import names
from bench.aggregate import Spread, Summary, find
from bench.figures import format_ratio, format_value
from bench.goals import MEMORY_CEILING_MIB, MET, NOT_MET, Goal, Results, highest_worker_rss, memory_growth
from bench.plan import GOAL_WORKERS

CORES_NOTE = ("The bound on scale-out here is the machine: 2 cores, shared with Kafka, PostgreSQL and FerretDB "
              "(and the target emulators), so more workers than cores compete with the stores they write to.")


@dataclass(frozen=True)
class RunLine:
    """One run of one job, for the list of runs."""

    job: str
    repetition: int
    ok: bool
    seconds: float
    command: str
    error: str | None = None


def render_report(when: str, command: str, machine: dict[str, str], results: Results, goals: list[Goal],
                  runs: list[RunLine]) -> str:
    plan = results.plan
    runs_of = f"the median of {plan.repeats} runs of its job, with the spread (lowest–highest run) beside it" \
        if plan.repeats > 1 else "from one run of its job"
    lines = ["# syncflow benchmark report", "",
             f"Run {when} with `{command}`. Each figure is {runs_of}; each baseline is measured in the same run as "
             "its figure, and the ratio is computed in each run (then its median taken).", ""]
    if plan.quick:
        lines += ["**Quick run**: one run of each job at small sizes, a smoke test; goals stated at larger sizes are "
                  "not measured by it.", ""]
    lines += ["## Machine", ""]
    lines += [f"- {name}: {value}" for name, value in machine.items()]
    lines += ["", "Kafka, PostgreSQL, FerretDB, the emulators and the benchmarks share the machine.", ""]
    lines += goals_section(goals)
    lines += scale_out_section(results)
    lines += memory_section(results)
    lines += figures_section(results)
    lines += runs_section(results, runs)
    return "\n".join(lines) + "\n"


# -- sections ---------------------------------------------------------------------------------
def goals_section(goals: list[Goal]) -> list[str]:
    met = sum(g.verdict == MET for g in goals)
    lines = ["## Goals", "", f"{met} of {len(goals)} met.", "",
             "| goal | needs | verdict | measured |", "|---|---|---|---|"]
    for g in goals:
        verdict = f"**{g.verdict}**" if g.verdict in (MET, NOT_MET) else g.verdict
        lines.append(f"| {cell(g.title)} | {cell(g.needs)} | {verdict} | {cell(g.measured)} |")
    return lines + [""]


def scale_out_section(results: Results) -> list[str]:
    """Sync-in and sync-out rates with 1, 2, 4 workers in one table, each against its baseline."""
    plan = results.plan
    counts = plan.worker_counts
    header = "| figure | " + " | ".join(f"{n} worker{'s' if n != 1 else ''}" for n in counts) + " |"
    lines = ["## Scale-out: 1, 2 and 4 workers", "", CORES_NOTE, "",
             "Each cell: median (lowest–highest), then the ratio to its baseline from the same run: for sync-in "
             "its bound (the slowest bare part), for sync-out the same requests sent bare at one worker's concurrency.", "",
             header, "|---|" + "---|" * len(counts)]
    sync_in = [find(results.summaries(plan.sync_in_job(plan.small_records, n).name), names.SYNC_IN_RATE_VS_BOUND)
               for n in counts]
    lines.append(f"| sync-in, {plan.small_records:,} records, records/s vs bound (slowest bare part) | "
                 + " | ".join(rate_cell(s) for s in sync_in) + " |")
    sync_out = results.summaries(plan.sync_out_job().name)
    for target in ("one", "lessen360"):
        row = [find(sync_out, names.sync_out_drain(target, n)) for n in counts]
        if any(row):
            lines.append(f"| sync-out {target}, {plan.sync_out_events:,}-event backlog, deliveries/s vs bare HTTP | "
                         + " | ".join(rate_cell(s) for s in row) + " |")
    return lines + [""]


def memory_section(results: Results) -> list[str]:
    plan = results.plan
    lines = ["## Memory", "",
             f"Peak RSS of each sync-in worker ({GOAL_WORKERS} workers) at {plan.small_records:,} and at "
             f"{plan.large_records:,} records (medians of the runs), the ratio, and the {MEMORY_CEILING_MIB:.0f} MiB ceiling.", "",
             f"| worker | at {plan.small_records:,} | at {plan.large_records:,} | ratio | under {MEMORY_CEILING_MIB:.0f} MiB |",
             "|---|---|---|---|---|"]
    growth = memory_growth(results)
    for worker, small, large, ratio in growth:
        under = "yes" if max(small, large) < MEMORY_CEILING_MIB else "**no**"
        lines.append(f"| sync-in {worker} | {format_value(small, 'MiB')} | {format_value(large, 'MiB')} | "
                     f"{format_ratio(ratio)} | {under} |")
    if not growth:
        lines.append("| sync-in | not measured | – | – | – |")
    highest = highest_worker_rss(results)
    if highest is not None:
        lines += ["", f"Highest peak RSS of any worker in any run: {format_value(highest[1], 'MiB')} ({cell(highest[0])})."]
    return lines + [""]


def figures_section(results: Results) -> list[str]:
    lines = ["## All figures", "",
             "| job | figure | median | lowest–highest | baseline (median) | ratio (median, lowest–highest) |",
             "|---|---|---|---|---|---|"]
    for job in results.plan.jobs():
        runs = results.runs.get(job.name)
        summaries = results.summaries(job.name)
        if not summaries:
            why = "; ".join(runs.failures) if runs and runs.failures else "not run"
            lines.append(f"| {cell(job.title)} | **no figures** ({cell(why)}) | – | – | – | – |")
            continue
        for s in summaries:
            lines.append(f"| {cell(job.title)} | {cell(s.name)} | {median_cell(s.value, s.unit)} | {spread_cell(s.value)} | "
                         f"{baseline_cell(s)} | {ratio_cell(s.ratio)} |")
    return lines + [""]


def runs_section(results: Results, runs: list[RunLine]) -> list[str]:
    total = sum(r.seconds for r in runs)
    lines = ["## Runs", "", f"{len(runs)} run{'s' if len(runs) != 1 else ''}, {total / 60:,.0f} minutes in all.", ""]
    titles = {job.name: job for job in results.plan.jobs()}
    for r in runs:
        job = titles.get(r.job)
        status = "ok" if r.ok else f"**failed**: {r.error or 'unknown'}"
        lines.append(f"- {job.title if job else r.job}, run {r.repetition}: {status} in {r.seconds:,.0f} s — `{r.command}`")
    lines += ["", "Parameters of each job's first run:", ""]
    for job in results.plan.jobs():
        params = results.runs[job.name].params() if job.name in results.runs else {}
        if params:
            lines.append(f"- {job.title}: `{json.dumps(params, sort_keys=True, default=str, ensure_ascii=False)}`")
    return lines


# -- cells ------------------------------------------------------------------------------------
def median_cell(v: Spread | None, unit: str) -> str:
    return format_value(v.median, unit) if v is not None else "n/a"


def spread_cell(v: Spread | None) -> str:
    if v is None:
        return "–"
    if v.runs == 1:
        return "one run"
    return f"{format_value(v.low, '')}–{format_value(v.high, '')} ({v.runs} runs)"


def baseline_cell(s: Summary) -> str:
    if s.baseline_name is None:
        return "–"
    value = format_value(s.baseline.median, s.baseline_unit or "") if s.baseline is not None else "n/a"
    return f"{value} ({cell(s.baseline_name)})"


def ratio_cell(r: Spread | None) -> str:
    if r is None:
        return "–"
    if r.runs == 1:
        return format_ratio(r.median)
    return f"{format_ratio(r.median)} ({format_ratio(r.low)}–{format_ratio(r.high)})"


def rate_cell(s: Summary | None) -> str:
    """A rate with its spread and its ratio to the baseline: '1,020 (980–1,100), 0.42×'."""
    if s is None or s.value is None:
        return "not measured"
    text = format_value(s.value.median, "")
    if s.value.runs > 1:
        text += f" ({format_value(s.value.low, '')}–{format_value(s.value.high, '')})"
    if s.ratio is not None:
        text += f", {format_ratio(s.ratio.median)}"
    return text


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
