"""End-to-end benchmark: the whole pipeline on the local stack, source emulator to target
emulator, run by the demo's own machinery (its plan, role set, supervisor and reset) in a
namespace of its own (topics, groups, PostgreSQL schema and its cursors, MongoDB database,
ports).

    .venv/bin/python bench/end_to_end.py [--volume 600] [--rounds 5 --changes 40] [--json out.json]

1. initial load: the emulators serve a generated world of --volume units (about 3.3 source
   records per unit); every worker is started and ready before the connectors start. The
   clock runs from the first record a connector produced (its Kafka timestamp) to the last
   delivery at a target; the connectors' start-up before it is reported in the params.
   Figures: source records/s through the whole pipeline, and deliveries/s per target.
2. changes: --rounds rounds of --changes changes per source, --interval seconds apart. A
   change's time is the wall-clock moment its source emulator answered the change request
   (the emulators' own modified times run on a simulated clock, so they cannot be used);
   it is matched to the first common-database version of that source record written after
   it, and that version (or a later one) to its first receipt at each target
   (/_emulator/received). Figures: p50/p99 of source change → target receipt. The figure
   includes the connectors' poll interval (--poll-interval).
3. peak RSS of every worker process (psutil, sampled twice a second over the whole run).

Baselines from the same run: a bare consume of the raw topics, and the requests each target
received replayed with bare aiohttp at the workers' combined concurrency (and one at a time
for the latency floor). The targets' rate limits are raised far above what the pipeline can
do and no target faults are injected, so the figures are the pipeline's own."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from pymongo import MongoClient
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import Call, bare_consume, bare_http, median, percentile  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure, print_table, write_json  # noqa: E402

from syncflow.demo.demo import (  # noqa: E402
    SOURCES, DemoPlan, wait_for_emulators, plan_settings, post_json, read_progress, reset_state, role_env, role_specs)
from syncflow.demo.namespace import Namespace  # noqa: E402
from syncflow.demo.reconcile import get_json  # noqa: E402
from syncflow.demo.supervisor import RoleProcess, Supervisor  # noqa: E402
from syncflow.sinks.common_db.engine import make_engine  # noqa: E402
from syncflow.streams.admin import delete_topics  # noqa: E402
from syncflow.streams.security import kafka_client_config  # noqa: E402
from syncflow.settings import Settings, local_stack_dir  # noqa: E402

WORKER_PREFIXES = ("sync-in-", "sync-out-")


def free_port_block(size: int, start: int = 21000, end: int = 60000) -> int:
    """The first port of `size` consecutive ports nobody listens on: the roles take their
    ports from bases plus an index, and other runs (the demo, a test) may hold the defaults."""
    port = start + (os.getpid() * 37) % 1000 * 20
    while port + size < end:
        try:
            socks = []
            for p in range(port, port + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            port += size
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def port_env(plan: DemoPlan) -> dict[str, str]:
    """Environment that moves every emulator and role of the run onto free ports."""
    n_out = sum(plan.sync_out_workers.values())
    base = free_port_block(4 + 2 + 1 + 4 + plan.sync_in_workers + n_out)
    env: dict[str, str] = {}
    for i, source in enumerate(SOURCES):
        env[f"SYNCFLOW_CONNECTORS__SOURCES__{source.upper()}__BASE_URL"] = f"http://127.0.0.1:{base + i}"
    for i, target in enumerate(("one", "lessen360")):
        env[f"SYNCFLOW_SYNC_OUT__TARGETS__{target.upper()}__BASE_URL"] = f"http://127.0.0.1:{base + 4 + i}"
    env["SYNCFLOW_INGEST__PORT"] = str(base + 6)
    env["SYNCFLOW_OPS__CONNECTOR_WEB_PORT"] = str(base + 7)
    env["SYNCFLOW_SYNC_IN__WEB_PORT"] = str(base + 11)
    env["SYNCFLOW_SYNC_OUT__WEB_PORT"] = str(base + 11 + plan.sync_in_workers)
    return env


class RssSampler(threading.Thread):
    """Peak resident set size per role (the process and its children), sampled in the
    background: a worker's peak is usually during the load, not at the end."""

    def __init__(self, supervisor: Supervisor, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.supervisor, self.interval_s = supervisor, interval_s
        self.peak: dict[str, int] = defaultdict(int)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            for name, role in list(self.supervisor.roles.items()):
                rss = _tree_rss(role)
                if rss > self.peak[name]:
                    self.peak[name] = rss

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is not None:  # started
            self.join(5)


def _tree_rss(role: RoleProcess) -> int:
    if role.pid is None or not role.alive:
        return 0
    try:
        proc = psutil.Process(role.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


@dataclass
class Change:
    """One change asked of a source emulator, at wall-clock time `at`."""

    source: str
    entity_type: str
    source_id: str
    at: float


@dataclass
class Run:
    t0: float = 0.0  # connectors started
    load_settled: float = 0.0  # phase 2 starts after this
    raw_after_load: int = 0
    changes: list[Change] = field(default_factory=list)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    versions: dict[tuple[str, str, str], list[tuple[float, str, int]]] = field(default_factory=dict)
    raw_topics: list[str] = field(default_factory=list)
    first_version: float = float("nan")
    rounds: int = 0
    interval_s: float = 1.0


def settle(settings: Settings, engine: Any, supervisor: Supervisor, quiet_s: float, timeout_s: float,
           label: str) -> int:
    """Wait until sync-in has no lag and nothing new reached a target for `quiet_s`
    (parked and long-retrying changes are not waited for). Returns the raw record count."""
    started = time.monotonic()
    last_key: tuple[int, ...] | None = None
    last_change = time.monotonic()
    while True:
        dead = supervisor.dead()
        if dead:
            raise RuntimeError(f"{dead[0].spec.name} exited:\n{dead[0].log_tail()}")
        p = read_progress(settings, engine, label)
        key = (p.raw_records, p.versions, *p.delivered.values())
        now = time.monotonic()
        if key != last_key:
            last_key, last_change = key, now
        sync_in_lag = p.lag.get(settings.sync_in.group_id, 1)
        print(f"  {label}: {now - started:5.0f} s  raw {p.raw_records:,}  versions {p.versions:,}  delivered "
              + ", ".join(f"{t} {n:,}" for t, n in p.delivered.items()) + f"  sync-in lag {sync_in_lag:,}",
              file=sys.stderr, flush=True)
        if p.raw_records > 0 and sum(p.delivered.values()) > 0 and sync_in_lag == 0 and now - last_change >= quiet_s:
            return p.raw_records
        if now - started > timeout_s:
            raise TimeoutError(f"{label} did not settle in {timeout_s:.0f} s")
        time.sleep(1.0)


def run_pipeline(base: Settings, plan: DemoPlan, namespace: Namespace, args: argparse.Namespace,
                 run_dir: Path) -> tuple[Run, dict[str, int], dict[str, Any]]:
    """Both phases under one supervisor; returns the run, peak RSS per role and the bare-HTTP results."""
    settings = plan_settings(namespace.settings(base), plan)
    reset_state(settings, namespace)
    supervisor = Supervisor(run_dir, {**role_env(plan), **namespace.env(),
                                      **{f"SYNCFLOW_CONNECTORS__SOURCES__{s.upper()}__POLL_INTERVAL_S": str(args.poll_interval)
                                         for s in SOURCES}})
    sampler = RssSampler(supervisor)
    run = Run(raw_topics=[src.topic for src in settings.connectors.sources.values() if src.topic],
              rounds=args.rounds, interval_s=args.interval)
    engine = make_engine(settings, pool_size=2)
    try:
        specs = role_specs(settings, plan)
        for spec in specs:
            if not spec.name.startswith("connector-"):
                supervisor.start(spec)
        sampler.start()
        wait_for_emulators(settings, supervisor)
        for role in supervisor.roles.values():
            if not role.wait_ready(120, path="/health"):
                raise RuntimeError(f"{role.spec.name} did not start:\n{role.log_tail()}")
        # /ready includes holding partitions: the load should not start into a group rebalance.
        for name, role in supervisor.roles.items():
            if name.startswith(WORKER_PREFIXES) and not role.wait_ready(120, path="/ready"):
                print(f"warning: {name} not ready after 120 s; starting the load anyway", file=sys.stderr)
        print(f"workers ready; starting the connectors on a world of {plan.volume} units", file=sys.stderr)
        run.t0 = time.time()
        for spec in specs:
            if spec.name.startswith("connector-"):
                supervisor.start(spec)
        run.raw_after_load = settle(settings, engine, supervisor, args.quiet, args.timeout, "initial load")
        run.load_settled = time.time()
        for _ in range(args.rounds):
            for source in SOURCES:
                url = f"{settings.connectors.sources[source].base_url.rstrip('/')}/_emulator/changes"
                answer = post_json(url, {"count": args.changes})
                at = time.time()
                run.changes += [Change(source, c["entity_type"], c["source_id"], at) for c in answer["changed"]]
            time.sleep(args.interval)
        settle(settings, engine, supervisor, args.quiet, args.timeout, "changes")
        for target, conf in settings.sync_out.targets.items():
            run.received[target] = get_json(f"{conf.base_url.rstrip('/')}/_emulator/received", timeout=120)
        run.versions = read_versions(engine, run.changes)
        with engine.connect() as conn:
            first = conn.execute(text("SELECT min(created_date) FROM data_versions")).scalar()
        run.first_version = _epoch(first) if first is not None else float("nan")
        # The workers stop before the bare-HTTP baseline so it has the cores to itself, as they had.
        for name, role in supervisor.roles.items():
            if name != "emulators":
                role.stop()
        sampler.stop()
        bare = asyncio.run(http_baselines(settings, plan, run))
        return run, dict(sampler.peak), bare
    finally:
        sampler.stop()
        supervisor.stop_all()
        engine.dispose()


def read_versions(engine: Any, changes: list[Change]) -> dict[tuple[str, str, str], list[tuple[float, str, int]]]:
    """(source, entity type, source id) → [(created, canonical entity id, version)], oldest first."""
    wanted = {(c.source, c.entity_type, c.source_id) for c in changes}
    out: dict[tuple[str, str, str], list[tuple[float, str, int]]] = defaultdict(list)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT source_system, entity_type, source_id, created_date, entity_id, version_number "
                                 "FROM data_versions ORDER BY created_date"))
        for source, etype, sid, created, eid, version in rows:
            if (source, etype, sid) in wanted:
                out[(source, etype, sid)].append((_epoch(created), eid, int(version)))
    return out


def _epoch(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


@dataclass
class Latencies:
    per_target: dict[str, list[float]]  # source change → receipt at that target, seconds
    to_version: list[float]  # source change → its common-database version (connector + sync-in)
    version_to_target: list[float]  # that version → receipt at a target (outbox + sync-out)
    left_out: int


def latencies(changes: list[Change], versions: dict[tuple[str, str, str], list[tuple[float, str, int]]],
              received: dict[str, list[dict[str, Any]]]) -> Latencies:
    """Source change → first receipt at each target of the version it produced (or a later
    one: a stale version may be skipped). A change whose next version was written after the
    same record changed again is left out (its version cannot be told apart); so is one that
    produced no version (invalid, or nothing the common model keeps)."""
    by_record: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for c in changes:
        by_record[(c.source, c.entity_type, c.source_id)].append(c.at)
    receipts: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for target, rows in received.items():
        per: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for r in rows:
            if r.get("version") is not None:
                per[r["external_id"]].append((float(r["time"]), int(r["version"])))
        for v in per.values():
            v.sort()
        receipts[target] = per
    out = Latencies({t: [] for t in received}, [], [], 0)
    for c in changes:
        key = (c.source, c.entity_type, c.source_id)
        later_change = min((t for t in by_record[key] if t > c.at), default=float("inf"))
        # 50 ms of slack: the change time is taken after the emulator's answer arrived.
        found = next(((created, eid, v) for created, eid, v in versions.get(key, []) if created >= c.at - 0.05), None)
        if found is None or found[0] >= later_change:
            out.left_out += 1
            continue
        created, eid, v = found
        out.to_version.append(created - c.at)
        for target, per in receipts.items():
            first = next((t for t, rv in per.get(eid, []) if rv >= v and t >= c.at), None)
            if first is not None:
                out.per_target[target].append(first - c.at)
                out.version_to_target.append(first - created)
    return out


async def http_baselines(settings: Settings, plan: DemoPlan, run: Run) -> dict[str, Any]:
    """Replay what each target received, bare, against the same (reset) emulator."""
    out: dict[str, Any] = {}
    for target, rows in run.received.items():
        conf = settings.sync_out.targets[target]
        calls = [Call(r["entity_type"], r["external_id"], r["op"], r["idempotency_key"] or f"{r['external_id']}:0",
                      r["payload"]) for r in sorted(rows, key=lambda r: r["time"])]
        if not calls:
            continue
        url = conf.base_url.rstrip("/")
        workers = plan.sync_out_workers.get(target, 1)
        runs = []
        for _ in range(2):  # the faster of two: one slow moment on a shared machine is not the baseline
            post_json(f"{url}/_emulator/reset", {})
            runs.append(await bare_http(target, url, conf.api_key, calls, conf.concurrency * workers, conf.batch_max))
        full = max(runs, key=lambda r: r.rate)
        post_json(f"{url}/_emulator/reset", {})
        single = await bare_http(target, url, conf.api_key, calls[:300], 1, 1)
        out[target] = {"full": full, "single": single, "concurrency": conf.concurrency * workers}
    return out


def load_timeline(run: Run) -> dict[str, dict[str, float]]:
    """Seconds from the connectors' start until 50/90/99/100 % of each target's initial-load
    deliveries had arrived: shows whether a slow tail (dependency waits) sets the rate."""
    out = {}
    for target, rows in run.received.items():
        ts = sorted(float(r["time"]) - run.t0 for r in rows if float(r["time"]) < run.load_settled)
        if ts:
            out[target] = {f"p{q}": round(ts[max(0, -(-q * len(ts) // 100) - 1)], 1) for q in (50, 90, 99, 100)}
    return out


def first_of_each(run: Run, consume: Any) -> dict[str, float]:
    """Seconds from the connectors' start to the first raw record, common-database version
    and target delivery: where a small load's time goes."""
    deliveries = [float(r["time"]) for rows in run.received.values() for r in rows]
    raw = consume.first_timestamp_ms / 1000 if consume.first_timestamp_ms else float("nan")
    return {"raw record": round(raw - run.t0, 1), "version": round(run.first_version - run.t0, 1),
            "delivery": round(min(deliveries, default=float("nan")) - run.t0, 1)}


def figures_of(run: Run, peak: dict[str, int], bare: dict[str, Any], consume: Any) -> list[Figure]:
    figs: list[Figure] = []
    load = {t: sorted(float(r["time"]) for r in rows if float(r["time"]) < run.load_settled)
            for t, rows in run.received.items()}
    last = max((ts[-1] for ts in load.values() if ts), default=float("nan"))
    # The clock starts at the first record a connector produced: the connectors' own start-up
    # (imports, first request; seconds on a busy machine) is in the params, not in the rate.
    start = consume.first_timestamp_ms / 1000 if consume.first_timestamp_ms else run.t0
    consume_base = Baseline("bare consume of the raw topics", consume.rate, "records/s")
    figs.append(Figure("initial load, source records/s, first raw record → last target delivery",
                       run.raw_after_load / (last - start), "records/s", consume_base))
    for target, ts in load.items():
        b = bare.get(target)
        base = Baseline(f"bare HTTP, same {b['full'].records:,} records, concurrency {b['concurrency']}",
                        b["full"].rate, "records/s") if b else None
        figs.append(Figure(f"initial load, deliveries/s to {target}", len(ts) / (ts[-1] - start) if ts else float("nan"),
                           "deliveries/s", base))
    lat = latencies(run.changes, run.versions, run.received)
    pooled = [x for v in lat.per_target.values() for x in v]
    single = [x for t in lat.per_target if t in bare for x in bare[t]["single"].latencies_s]
    pace = f"{len(run.changes) / max(1, run.rounds) / run.interval_s:.0f} changes/s in bursts" if run.changes else "no changes"
    figs.append(Figure(f"latency p50, source change → target receipt, {pace}", median(pooled) * 1000, "ms",
                       Baseline("bare HTTP round trip p50", median(single) * 1000, "ms") if single else None))
    figs.append(Figure(f"latency p99, source change → target receipt, {pace}", percentile(pooled, 99) * 1000, "ms",
                       Baseline("bare HTTP round trip p99", percentile(single, 99) * 1000, "ms") if single else None))
    for name in sorted(peak):
        if name.startswith(WORKER_PREFIXES):
            figs.append(Figure(f"peak RSS, {name}", peak[name] / 2**20, "MiB"))
    return figs


def _p50_p99_ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(median(values) * 1000), "p99": round(percentile(values, 99) * 1000)} if values else {}


def cleanup(settings: Settings, namespace: Namespace) -> None:
    """Remove what the run created on the shared stack."""
    delete_topics(settings, [s.name for s in namespace.topics(settings)])
    engine = make_engine(settings, pool_size=1)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    engine.dispose()
    client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=10000)
    client.drop_database(settings.mongo_database)
    client.close()


def main(args: argparse.Namespace) -> int:
    plan = DemoPlan(volume=args.volume, invalid_rate=args.invalid_rate, change_rounds=args.rounds,
                    changes_per_round=args.changes, round_interval_s=args.interval, webhook_changes_per_round=0,
                    sync_in_workers=args.sync_in_workers,
                    sync_out_workers={"one": args.one_workers, "lessen360": args.lessen360_workers},
                    rate_per_minute={"one": 6_000_000.0, "lessen360": 6_000_000.0}, target_error_rate=0.0,
                    timeout_s=args.timeout)
    os.environ.update(port_env(plan))  # the roles inherit it, Settings.load() reads it
    base = Settings.load()
    token = uuid.uuid4().hex[:8]
    run_dir = local_stack_dir() / "bench" / f"end-to-end-{time.strftime('%Y%m%d-%H%M%S')}-{token}"
    namespace = Namespace(suffix=f".bench-{token}", database_schema=f"bench_{token}", mongo_database=f"bench-{token}")
    settings = plan_settings(namespace.settings(base), plan)
    started = time.monotonic()
    try:
        run, peak, bare = run_pipeline(base, plan, namespace, args, run_dir)
        consume = bare_consume(kafka_client_config(settings), run.raw_topics)
    finally:
        if not args.keep:
            cleanup(settings, namespace)
    lat = latencies(run.changes, run.versions, run.received)
    params = {"volume": plan.volume, "invalid_rate": plan.invalid_rate, "rounds": args.rounds,
              "changes_per_round_per_source": args.changes, "interval_s": args.interval,
              "poll_interval_s": args.poll_interval, "sync_in_workers": plan.sync_in_workers,
              "sync_out_workers": plan.sync_out_workers, "raw_records_initial_load": run.raw_after_load,
              "raw_records_consumed_by_baseline": consume.records,
              "received": {t: len(r) for t, r in run.received.items()},
              "changes_asked": len(run.changes), "latency_samples": {t: len(v) for t, v in lat.per_target.items()},
              "changes_left_out_of_latency": lat.left_out,
              "latency_ms_by_stage": {
                  "source change → common-database version": _p50_p99_ms(lat.to_version),
                  "version → target receipt": _p50_p99_ms(lat.version_to_target)},
              "initial_load_seconds_to_share_of_deliveries": load_timeline(run),
              "initial_load_seconds_to_first": first_of_each(run, consume),
              "bare_http_errors": {t: b["full"].errors for t, b in bare.items()},
              "seconds": round(time.monotonic() - started, 1), "logs": str(run_dir)}
    result = BenchResult("end-to-end", params, figures_of(run, peak, bare, consume))
    print(json.dumps(params, indent=2), file=sys.stderr)
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volume", type=int, default=600, help="units in the generated world (~3.3 source records each)")
    p.add_argument("--invalid-rate", type=float, default=0.02)
    p.add_argument("--rounds", type=int, default=6, help="change rounds of the latency phase")
    p.add_argument("--changes", type=int, default=10,
                   help="changes per source and round (keep the pace below what sync-in sustains, or the "
                        "latency is mostly queueing)")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between change rounds")
    p.add_argument("--poll-interval", type=float, default=2.0, help="the connectors' poll interval")
    p.add_argument("--sync-in-workers", type=int, default=2)
    p.add_argument("--one-workers", type=int, default=2)
    p.add_argument("--lessen360-workers", type=int, default=1)
    p.add_argument("--quiet", type=float, default=15.0, help="seconds without progress that end a phase")
    p.add_argument("--timeout", type=float, default=900.0, help="limit per phase")
    p.add_argument("--keep", action="store_true", help="keep the run's topics, schema and raw database")
    p.add_argument("--json", help="write the figures here (bench/figures.py format)")
    sys.exit(main(p.parse_args()))
