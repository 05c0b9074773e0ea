"""Run every benchmark and write one Markdown report: the machine it ran on and one table of
| figure | value | baseline | ratio |, each figure beside the baseline measured in the same run.

    .venv/bin/python bench/report.py            # full sizes (about half an hour on 2 cores)
    .venv/bin/python bench/report.py --quick    # small sizes, a smoke run of a few minutes
    make bench BENCH_ARGS=--quick

Each benchmark runs as its own process (bench/sync_in.py, bench/sync_out.py,
bench/end_to_end.py, each with --json): one that fails or times out is marked failed in the
report and the others still run. Their logs go to --logs (default: a fresh temp directory)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.figures import BenchResult, markdown_rows, read_json  # noqa: E402

BENCHES = ("sync-in", "sync-out", "end-to-end")
SCRIPTS = {"sync-in": "sync_in.py", "sync-out": "sync_out.py", "end-to-end": "end_to_end.py"}


@dataclass
class Outcome:
    """What became of one benchmark process."""

    bench: str
    result: BenchResult | None = None
    error: str | None = None
    seconds: float = 0.0
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None


# -- sizes ----------------------------------------------------------------------------------------
def bench_args(args: argparse.Namespace) -> dict[str, list[str]]:
    """Command-line flags of each benchmark for the chosen sizes."""
    if args.quick:
        return {
            "sync-in": ["--records", str(args.records or 2000)],
            "sync-out": ["--events", str(args.events or 2000), "--seconds", "10", "--latency-seconds", "5"],
            "end-to-end": ["--volume", str(args.volume or 100), "--rounds", "2", "--changes", "10", "--quiet", "10"],
        }
    return {
        "sync-in": ["--records", str(args.records or 20000)],
        "sync-out": ["--events", str(args.events or 20000)],
        "end-to-end": ["--volume", str(args.volume or 600)],
    }


# -- running --------------------------------------------------------------------------------------
def run_bench(bench: str, flags: list[str], logs: Path, timeout_s: float) -> Outcome:
    """Run one benchmark script; a non-zero exit, a timeout or a missing/unreadable JSON file
    is a failed benchmark with the reason, never an exception."""
    out_json = logs / f"{bench}.json"
    out_json.unlink(missing_ok=True)
    log = logs / f"{bench}.log"
    cmd = [sys.executable, str(REPO / "bench" / SCRIPTS[bench]), *flags, "--json", str(out_json)]
    shown = " ".join(["bench/" + SCRIPTS[bench], *flags])
    print(f"running {shown}  (log: {log})", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with open(log, "wb") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(bench, error=f"timed out after {timeout_s:.0f} s", seconds=time.monotonic() - started, command=shown)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        return Outcome(bench, error=f"exit status {proc.returncode}: {last_error_line(log)}", seconds=seconds, command=shown)
    try:
        return Outcome(bench, read_json(out_json), seconds=seconds, command=shown)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Outcome(bench, error=f"no usable --json output ({type(exc).__name__}: {exc})", seconds=seconds, command=shown)


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


# -- the machine ----------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """Where the figures come from: they mean little without it."""
    info = {"CPU": f"{cpu_model()}, {os.cpu_count()} cores", "RAM": ram(), "OS": os_name(),
            "Python": platform.python_version()}
    info.update(service_versions())
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ram() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:  # noqa: BLE001 - a report without RAM is still a report
        return "unknown"


def os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
        pretty = m.group(1) if m else platform.system()
    except OSError:
        pretty = platform.system()
    return f"{pretty}, kernel {platform.release()}"


def service_versions() -> dict[str, str]:
    """Kafka, PostgreSQL and FerretDB versions of the stack the benchmarks used."""
    from syncflow.settings import Settings

    settings = Settings.load()
    out = {"Kafka": kafka_version(), "PostgreSQL": "unknown", "FerretDB": "unknown"}
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(settings.database_url)
        with engine.connect() as conn:
            out["PostgreSQL"] = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        out["PostgreSQL"] = f"unknown ({type(exc).__name__})"
    try:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
        info = client.admin.command("buildInfo")
        client.close()
        version = info.get("ferretdbVersion")
        if not version or version == "unknown":  # a build from the module proxy does not know its own version
            version = ferretdb_pin() or "unknown"
        out["FerretDB"] = f"{version} (MongoDB wire {info.get('version', '?')})"
    except Exception as exc:  # noqa: BLE001
        out["FerretDB"] = f"unknown ({type(exc).__name__})"
    return out


def kafka_version() -> str:
    """The broker's version from the jars the local stack runs it from."""
    libs = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syncflow" / "kafka-libs"
    for jar in sorted(libs.glob("kafka-server-*.jar")):
        m = re.match(r"kafka-server-(\d[\w.\-]*)\.jar$", jar.name)
        if m:
            return f"{m.group(1)} (KRaft, local stack)"
    return "unknown"


def ferretdb_pin() -> str | None:
    gomod = REPO / "deploy" / "local" / "ferretdb" / "go.mod"
    try:
        m = re.search(r"github.com/FerretDB/FerretDB (v[\w.\-]+)", gomod.read_text())
    except OSError:
        return None
    return f"{m.group(1)} (built from deploy/local/ferretdb)" if m else None


# -- the report -----------------------------------------------------------------------------------
def render_report(when: str, machine_info: dict[str, str], outcomes: list[Outcome], command: str) -> str:
    """The whole Markdown report (pure: everything it shows is passed in)."""
    lines = [f"# syncflow benchmark report", "",
             f"Run {when} with `{command}`.", "", "## Machine", ""]
    lines += [f"- {name}: {value}" for name, value in machine_info.items()]
    lines += ["", "Kafka, PostgreSQL, FerretDB, the emulators and the benchmarks share the machine.", "",
              "## Figures", "",
              "Each figure is beside its baseline from the same run; ratio = figure / baseline.", "",
              "| figure | value | baseline | ratio |", "|---|---|---|---|"]
    for o in outcomes:
        if o.ok:
            assert o.result is not None
            rows = markdown_rows(o.result.figures, prefix=f"{o.bench}: ")
            lines += rows or [f"| {o.bench}: no figures | – | – | – |"]
        else:
            lines.append(f"| {o.bench}: **failed** ({_cell(o.error or 'unknown')}) | – | – | – |")
    lines += ["", "## Runs", ""]
    for o in outcomes:
        status = "ok" if o.ok else "failed"
        lines.append(f"- {o.bench}: {status} in {o.seconds:,.0f} s — `{o.command}`")
        if o.ok and o.result is not None and o.result.params:
            lines.append(f"  - parameters: `{json.dumps(o.result.params, sort_keys=True, default=str, ensure_ascii=False)}`")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--records", type=int, help="sync-in records (default 20000; quick 2000)")
    p.add_argument("--events", type=int, help="sync-out backlog events (default 20000; quick 2000)")
    p.add_argument("--volume", type=int, help="end-to-end world units (default 600; quick 100)")
    p.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES), help="run only these benchmarks")
    p.add_argument("--timeout", type=float, default=1800.0, help="limit per benchmark, seconds")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "REPORT.md")
    p.add_argument("--logs", type=Path, help="directory for the benchmarks' logs and JSON (default: a temp dir)")
    args = p.parse_args(argv)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="syncflow-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    flags = bench_args(args)
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    outcomes = [run_bench(b, flags[b], logs, args.timeout) for b in args.only]
    command = "bench/report.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render_report(when, machine(), outcomes, command.strip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"written to {args.out}; logs in {logs}", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
