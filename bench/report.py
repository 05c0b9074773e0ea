"""Run every benchmark job `--repeats` times (default 3) and write one Markdown report,
bench/REPORT.md: each figure the median of the runs with its spread, beside its baseline
measured in the same run and the ratio; sync-in and sync-out with 1, 2 and 4 workers in one
table; sync-in's memory at two sizes; and each goal of the performance issue marked met,
not met or not measured, with the numbers.

    .venv/bin/python bench/report.py            # full: three runs of each job (about 45 minutes on 2 cores)
    .venv/bin/python bench/report.py --quick    # one run of each job at small sizes, a smoke run of a few minutes
    make bench BENCH_ARGS=--quick

The jobs and their sizes are in bench/plan.py. Each run is its own process (bench/sync_in.py,
bench/sync_out.py, bench/end_to_end.py, each with --json): one that fails is run once more
(another run may have restarted a store), one that fails again or times out is marked failed
in the report, and the others still run. Logs and JSON go to --logs (default:
a fresh temp directory)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.aggregate import JobRuns  # noqa: E402
from bench.figures import BenchResult, read_json  # noqa: E402
from bench.goals import Results, evaluate  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.plan import Job, Plan, full_plan, quick_plan  # noqa: E402
from bench.render import RunLine, render_report  # noqa: E402


@dataclass
class Outcome:
    """What became of one run of one job."""

    result: BenchResult | None = None
    error: str | None = None
    seconds: float = 0.0
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None


# -- running --------------------------------------------------------------------------------------
def run_job(job: Job, repetition: int, logs: Path, timeout_s: float, attempt: int = 1) -> Outcome:
    """Run one benchmark script once; a non-zero exit, a timeout or a missing/unreadable JSON
    file is a failed run with the reason, never an exception."""
    stem = f"{job.name}-run{repetition}"
    out_json = logs / f"{stem}.json"
    log = logs / (f"{stem}.log" if attempt == 1 else f"{stem}-attempt{attempt}.log")
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "bench" / job.script), *job.flags, "--json", str(out_json)]
    shown = " ".join(["bench/" + job.script, *job.flags])
    print(f"{time.strftime('%H:%M:%S')} run {repetition}: {shown}  (log: {log})", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with open(log, "wb") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(error=f"timed out after {timeout_s:.0f} s", seconds=time.monotonic() - started, command=shown)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        return Outcome(error=f"exit status {proc.returncode}: {last_error_line(log)}", seconds=seconds, command=shown)
    try:
        return Outcome(read_json(out_json), seconds=seconds, command=shown)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Outcome(error=f"no usable --json output ({type(exc).__name__}: {exc})", seconds=seconds, command=shown)


def last_error_line(log: Path) -> str:
    """The line of a log most likely to say why a process failed."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if re.search(r"error|exception|unrecognized|Traceback", line, re.I):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def run_plan(plan: Plan, logs: Path, timeout_s: float) -> tuple[Results, list[RunLine]]:
    """Every (repetition, job) of the plan's schedule, in order."""
    runs = {job.name: JobRuns(job.name) for job in plan.jobs()}
    lines: list[RunLine] = []
    for repetition, job in plan.schedule():
        outcome = run_job(job, repetition, logs, timeout_s)
        if not outcome.ok and not (outcome.error or "").startswith("timed out"):
            # Others restart Kafka, PostgreSQL or FerretDB on this machine now and then: once more.
            print(f"run {repetition} of {job.name} failed ({outcome.error}); running it again", file=sys.stderr, flush=True)
            first_error = outcome.error
            outcome = run_job(job, repetition, logs, timeout_s, attempt=2)
            if not outcome.ok:
                outcome.error = f"{outcome.error} (and before: {first_error})"
        if outcome.ok and outcome.result is not None:
            runs[job.name].results.append(outcome.result)
        else:
            runs[job.name].failures.append(f"run {repetition}: {outcome.error}")
        lines.append(RunLine(job.name, repetition, outcome.ok, outcome.seconds, outcome.command, outcome.error))
    return Results(plan, runs), lines


def read_plan_logs(plan: Plan, logs: Path) -> tuple[Results, list[RunLine]]:
    """The results an earlier run left in `logs` (its JSON files), to render again without running."""
    runs = {job.name: JobRuns(job.name) for job in plan.jobs()}
    lines: list[RunLine] = []
    for repetition, job in plan.schedule():
        path = logs / f"{job.name}-run{repetition}.json"
        try:
            runs[job.name].results.append(read_json(path))
            lines.append(RunLine(job.name, repetition, True, 0.0, f"{path.name} (read again)"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            runs[job.name].failures.append(f"run {repetition}: no usable {path.name} ({type(exc).__name__})")
            lines.append(RunLine(job.name, repetition, False, 0.0, path.name, f"no usable {path.name}"))
    return Results(plan, runs), lines


# -- entry point ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one run of each job at small sizes: a smoke run")
    p.add_argument("--repeats", type=int, help="runs of each job (default 3; quick 1)")
    p.add_argument("--timeout", type=float, default=2700.0, help="limit per run, seconds")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "REPORT.md")
    p.add_argument("--logs", type=Path, help="directory for the runs' logs and JSON (default: a temp dir)")
    p.add_argument("--render-only", action="store_true",
                   help="run nothing: write the report from the JSON an earlier run left in --logs")
    args = p.parse_args(argv)
    plan = quick_plan() if args.quick else full_plan()
    if args.repeats:
        plan = replace(plan, repeats=args.repeats)
    if args.render_only and args.logs is None:
        p.error("--render-only needs --logs")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="syncflow-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    started = time.monotonic()
    results, runs = read_plan_logs(plan, logs) if args.render_only else run_plan(plan, logs, args.timeout)
    command = ("bench/report.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    report = render_report(when, command, machine(), results, evaluate(results), runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"written to {args.out} after {time.monotonic() - started:,.0f} s; logs in {logs}", file=sys.stderr)
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
