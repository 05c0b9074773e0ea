"""End-to-end benchmark: the whole pipeline on the local stack, source emulator to target
emulator, run by the demo's own machinery (its plan, role set, supervisor and reset) in a
namespace of its own (topics, groups, PostgreSQL schema and its cursors, MongoDB database,
a block of free ports).

    .venv/bin/python bench/end_to_end.py [--volume 6200] [--rounds 6 --changes 10] [--push-rate 100] [--json out.json]

1. initial load: the emulators serve a generated world of --volume units (about 3.3 source
   records per unit; 6,200 units ≈ 20,400 records); every worker is started and ready
   before the connectors start. The clock runs from the first record a connector produced
   (its Kafka timestamp) to the last delivery at a target. Figure: source records/s through
   the whole pipeline, beside sync-in's own rate on the same records (step 5) and a bare
   consume of the raw topics; deliveries/s per target beside bare HTTP.
2. poll path: --rounds rounds of --changes changes per source, --interval seconds apart,
   read by the connectors (poll interval --poll-interval). A change's time is the wall-clock
   moment its source emulator answered the change request (the emulators' own modified
   times run on a simulated clock, so they cannot be used); it is matched to the first
   common-database version of that source record written after it, and that version (or a
   later one) to its first receipt at each target (/_emulator/received). Figures: p50/p99
   of source change → target receipt.
3. push path: --push-rate changes/s for --push-seconds, Lessen360 posting each batch of
   changed work orders and attachments to the ingest API (its webhook, as in the demo); a
   change's time is the moment the batch was asked of the emulator. Figures: p50/p99 of
   source change → target receipt.
4. peak RSS of every worker process (psutil, sampled twice a second over steps 1-3).
5. sync-in alone: after the pipeline has stopped, the same number of sync-in workers read
   the same raw topics from the start in a consumer group, PostgreSQL schema and raw-store
   database of their own, with the machine to themselves as the pipeline had it; sync-in's
   rate is the initial load's raw records over the time from its first committed version to
   the committed version that completes the initial load's count of versions.

Other baselines from the same run: a bare consume of the raw topics, and the requests each
target received replayed with bare aiohttp at the workers' combined concurrency (and one at
a time for the latency floor). The targets' rate limits are raised far above what the
pipeline can do and no target faults are injected, so the figures are the pipeline's own.
Progress is read from Kafka offsets and the common database, never from the target
emulators' full state (at 20,000 records serializing it every second costs the emulators'
process, which also serves the sources, most of its time)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import Call, ConsumeRun, bare_consume, bare_http, median, percentile  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure, print_table, write_json  # noqa: E402

from syncflow.demo.demo import (  # noqa: E402
    SOURCES, DemoPlan, drop_state, drop_stores, plan_settings, post_json, reset_state, role_env, role_specs, wait_for_emulators)
from syncflow.demo.namespace import Namespace, free_ports  # noqa: E402
from syncflow.demo.reconcile import get_json  # noqa: E402
from syncflow.demo.supervisor import RoleProcess, RoleSpec, Supervisor  # noqa: E402
from syncflow.ops.status import consumer_groups, lag_by_group  # noqa: E402
from syncflow.sinks.common_db.engine import make_engine  # noqa: E402
from syncflow.sinks.common_db.migrate import migrate  # noqa: E402
from syncflow.sinks.raw_store import RawRecordStore  # noqa: E402
from syncflow.streams.admin import admin_client, topic_partitions, watermarks  # noqa: E402
from syncflow.streams.security import kafka_client_config  # noqa: E402
from syncflow.settings import Settings, local_stack_dir  # noqa: E402

WORKER_PREFIXES = ("sync-in-", "sync-out-")
PUSH_TICK_S = 0.1  # the push path's changes are asked for in batches this often
PUSH_IN_FLIGHT = 8  # batches asked for and not yet answered, at most


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
    load_settled: float = 0.0  # the poll-path changes start after this
    raw_after_load: int = 0
    versions_after_load: int = 0
    poll_changes: list[Change] = field(default_factory=list)
    push_changes: list[Change] = field(default_factory=list)
    push_rate: float = float("nan")  # changes/s the push phase achieved
    push_refused: int = 0  # changes the ingest API did not answer 202 for
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    versions: dict[tuple[str, str, str], list[tuple[float, str, int]]] = field(default_factory=dict)
    raw_topics: list[str] = field(default_factory=list)
    first_version: float = float("nan")
    last_load_version: float = float("nan")


@dataclass(frozen=True)
class Counters:
    """What tells whether the pipeline still moves, read from Kafka and the common database."""

    raw_records: int
    versions: int
    synced: dict[str, int]  # per target: the sum of the versions it holds (moves with every delivery)
    sync_in_lag: int
    sync_out_lag: int


def read_counters(settings: Settings, engine: Any, admin: Any, raw_topics: list[str]) -> Counters:
    groups = consumer_groups(settings)
    lags = {g.group: g.lag for g in lag_by_group(admin, groups)}
    raw = sum(high - low for low, high in watermarks(admin, topic_partitions(admin, raw_topics)).values())
    with engine.connect() as conn:
        versions = int(conn.execute(text("SELECT count(*) FROM data_versions")).scalar_one())
        synced = {str(t): int(n) for t, n in conn.execute(text(
            "SELECT target, coalesce(sum(synced_version), 0) FROM target_sync_state GROUP BY target"))}
    sync_in = settings.sync_in.group_id
    return Counters(raw, versions, synced, lags.get(sync_in, 1), sum(v for g, v in lags.items() if g != sync_in))


def settle(settings: Settings, engine: Any, supervisor: Supervisor, raw_topics: list[str], quiet_s: float,
           timeout_s: float, label: str) -> Counters:
    """Wait until sync-in has no lag and nothing moved (raw records, versions, what the targets
    hold, sync-out's lag) for `quiet_s` (parked and long-retrying changes are not waited for)."""
    admin = admin_client(settings)
    started = time.monotonic()
    last: Counters | None = None
    last_change = time.monotonic()
    while True:
        dead = supervisor.dead()
        if dead:
            raise RuntimeError(f"{dead[0].spec.name} exited:\n{dead[0].log_tail()}")
        c = read_counters(settings, engine, admin, raw_topics)
        now = time.monotonic()
        if c != last:
            last, last_change = c, now
        print(f"  {label}: {now - started:5.0f} s  raw {c.raw_records:,}  versions {c.versions:,}  target versions "
              + ", ".join(f"{t} {n:,}" for t, n in sorted(c.synced.items()))
              + f"  lag sync-in {c.sync_in_lag:,} sync-out {c.sync_out_lag:,}", file=sys.stderr, flush=True)
        if c.raw_records > 0 and c.synced and c.sync_in_lag == 0 and now - last_change >= quiet_s:
            return c
        if now - started > timeout_s:
            raise TimeoutError(f"{label} did not settle in {timeout_s:.0f} s")
        time.sleep(1.0)


def poll_path_changes(settings: Settings, args: argparse.Namespace) -> list[Change]:
    """--rounds rounds of --changes changes at every source, for the connectors to read."""
    changes: list[Change] = []
    for _ in range(args.rounds):
        for source in SOURCES:
            url = f"{settings.connectors.sources[source].base_url.rstrip('/')}/_emulator/changes"
            answer = post_json(url, {"count": args.changes})
            at = time.time()
            changes += [Change(source, c["entity_type"], c["source_id"], at) for c in answer["changed"]]
        time.sleep(args.interval)
    return changes


def push_path_changes(settings: Settings, rate: float, seconds: float) -> tuple[list[Change], float, int]:
    """Lessen360 changes `rate` work orders and attachments a second for `seconds`, posting
    each batch to the ingest API (its webhook); a batch is asked for every PUSH_TICK_S
    whether or not the previous one has been answered (up to PUSH_IN_FLIGHT at once), so one
    slow answer does not slow the pace. Returns the changes the API accepted, the rate
    achieved (changes asked over the time to the last answer) and how many it refused."""
    url = f"{settings.connectors.sources['lessen360'].base_url.rstrip('/')}/_emulator/webhook"
    per_tick = max(1, round(rate * PUSH_TICK_S))
    ticks = max(1, round(seconds / PUSH_TICK_S))
    body = {"url": f"http://127.0.0.1:{settings.ingest.port}/ingest/lessen360",
            "api_key": settings.ingest.api_keys["lessen360"], "count": per_tick}

    def push() -> tuple[float, dict[str, Any]]:
        at = time.time()
        return at, post_json(url, body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=PUSH_IN_FLIGHT) as pool:
        futures = []
        for tick in range(ticks):
            time.sleep(max(0.0, started + tick * PUSH_TICK_S - time.monotonic()))
            futures.append(pool.submit(push))
        answers = [f.result() for f in futures]
        answered_s = time.monotonic() - started  # to the last answer: queued batches count against the rate
    changes: list[Change] = []
    refused = 0
    for at, answer in answers:
        for pushed in answer["pushed"]:
            if pushed["status"] != 202:
                refused += pushed["sent"]
                continue
            for key in pushed["body"]["keys"]:
                entity_type, source_id = key.split(":", 1)
                changes.append(Change("lessen360", entity_type, source_id, at))
    return changes, per_tick * ticks / answered_s, refused


def pipeline_env(base: Settings, plan: DemoPlan, namespace: Namespace, args: argparse.Namespace) -> dict[str, str]:
    """What every role of the run gets: the demo's settings, the namespace and its ports, the
    connectors' poll interval."""
    return {**role_env(plan), **namespace.env(), **namespace.port_env(base),
            **{f"SYNCFLOW_CONNECTORS__SOURCES__{s.upper()}__POLL_INTERVAL_S": str(args.poll_interval) for s in SOURCES}}


def run_pipeline(base: Settings, plan: DemoPlan, namespace: Namespace, args: argparse.Namespace,
                 run_dir: Path) -> tuple[Run, dict[str, int], dict[str, Any]]:
    """The three phases under one supervisor; returns the run, peak RSS per role and the bare-HTTP results."""
    settings = plan_settings(namespace.settings(base), plan)
    reset_state(settings, namespace)
    supervisor = Supervisor(run_dir, pipeline_env(base, plan, namespace, args))
    sampler = RssSampler(supervisor)
    run = Run(raw_topics=[src.topic for src in settings.connectors.sources.values() if src.topic])
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
        loaded = settle(settings, engine, supervisor, run.raw_topics, args.quiet, args.timeout, "initial load")
        run.raw_after_load, run.versions_after_load = loaded.raw_records, loaded.versions
        run.load_settled = time.time()
        with engine.connect() as conn:
            first, last = conn.execute(text("SELECT min(created_date), max(created_date) FROM data_versions")).one()
        run.first_version = _epoch(first) if first is not None else float("nan")
        run.last_load_version = _epoch(last) if last is not None else float("nan")
        run.poll_changes = poll_path_changes(settings, args)
        settle(settings, engine, supervisor, run.raw_topics, args.quiet, args.timeout, "poll-path changes")
        if args.push_seconds > 0:
            run.push_changes, run.push_rate, run.push_refused = push_path_changes(settings, args.push_rate,
                                                                                  args.push_seconds)
            settle(settings, engine, supervisor, run.raw_topics, args.quiet, args.timeout, "push-path changes")
        for target, conf in settings.sync_out.targets.items():
            run.received[target] = get_json(f"{conf.base_url.rstrip('/')}/_emulator/received", timeout=120)
        run.versions = read_versions(engine, run.poll_changes + run.push_changes)
        # The workers stop before the baselines so they have the cores to themselves, as they had.
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


@dataclass
class SyncInAlone:
    """Sync-in by itself on the raw topics the pipeline filled."""

    records: int  # the initial load's raw records
    versions: int  # the initial load's versions: once it has written as many, it is done
    seconds: float  # its first committed version → the one that completes `versions`

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def sync_in_alone(base: Settings, plan: DemoPlan, namespace: Namespace, args: argparse.Namespace, run: Run,
                  run_dir: Path) -> SyncInAlone:
    """The pipeline's sync-in workers again (same number, same settings), alone on the raw
    topics from the start, in a consumer group, schema and raw-store database of their own."""
    alone = dataclasses.replace(namespace, database_schema=f"{namespace.database_schema}_alone",
                                mongo_database=f"{namespace.mongo_database}-alone")
    settings = plan_settings(alone.settings(base), plan)
    group = f"sync-in-alone{namespace.suffix}"
    engine = make_engine(settings, pool_size=1)
    log_dir = run_dir / "sync-in-alone"
    log_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(log_dir, {**pipeline_env(base, plan, alone, args), "SYNCFLOW_SYNC_IN__GROUP_ID": group})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.database_schema}"'))
        migrate(settings)
        store = RawRecordStore(settings)
        store.ensure_indexes()
        store.close()
        for i in range(plan.sync_in_workers):
            port = settings.sync_in.web_port + i
            supervisor.start(RoleSpec(f"sync-in-{i + 1}", ["run", "sync-in", "--web-port", str(port)], port))
        deadline = time.monotonic() + args.timeout
        while True:
            dead = supervisor.dead()
            if dead:
                raise RuntimeError(f"{dead[0].spec.name} exited:\n{dead[0].log_tail()}")
            with engine.connect() as conn:
                done = int(conn.execute(text("SELECT count(*) FROM data_versions")).scalar_one())
                if done >= run.versions_after_load:
                    first, last = conn.execute(text(
                        "SELECT min(created_date), (SELECT created_date FROM data_versions ORDER BY created_date "
                        "OFFSET :n LIMIT 1) FROM data_versions"), {"n": run.versions_after_load - 1}).one()
                    return SyncInAlone(run.raw_after_load, run.versions_after_load, _epoch(last) - _epoch(first))
            print(f"  sync-in alone: versions {done:,} of {run.versions_after_load:,}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                raise TimeoutError(f"sync-in alone did not finish in {args.timeout:.0f} s")
            time.sleep(0.5)
    finally:
        supervisor.stop_all()
        engine.dispose()
        drop_side_state(settings, [group])


def drop_side_state(settings: Settings, groups: list[str]) -> None:
    """Drop a schema and raw-store database made beside the run's namespace, and its groups."""
    drop_stores(settings)
    for future in admin_client(settings).delete_consumer_groups(groups).values():
        try:
            future.result(30)
        except Exception as exc:  # noqa: BLE001 - gone already, or its members not yet expired: left to expire
            print(f"warning: consumer group not deleted: {exc}", file=sys.stderr)


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


def figures_of(run: Run, peak: dict[str, int], bare: dict[str, Any], consume: ConsumeRun, alone: SyncInAlone | None,
               args: argparse.Namespace) -> list[Figure]:
    figs: list[Figure] = []
    load = {t: sorted(float(r["time"]) for r in rows if float(r["time"]) < run.load_settled)
            for t, rows in run.received.items()}
    last = max((ts[-1] for ts in load.values() if ts), default=float("nan"))
    # The clock starts at the first record a connector produced: the connectors' own start-up
    # (imports, first request; seconds on a busy machine) is in the params, not in the rate.
    start = consume.first_timestamp_ms / 1000 if consume.first_timestamp_ms else run.t0
    rate = run.raw_after_load / (last - start)
    name = "initial load, source records/s, first raw record → last target delivery"
    if alone is not None:
        figs.append(Figure(name, rate, "records/s", Baseline(
            "sync-in alone, same raw records and workers, first → last committed version", alone.rate, "records/s")))
    figs.append(Figure(name, rate, "records/s", Baseline("bare consume of the raw topics", consume.rate, "records/s")))
    for target, ts in load.items():
        b = bare.get(target)
        base = Baseline(f"bare HTTP, same {b['full'].records:,} records, concurrency {b['concurrency']}",
                        b["full"].rate, "records/s") if b else None
        figs.append(Figure(f"initial load, deliveries/s to {target}", len(ts) / (ts[-1] - start) if ts else float("nan"),
                           "deliveries/s", base))
    single = [x for t in run.received if t in bare for x in bare[t]["single"].latencies_s]
    floor50 = Baseline("bare HTTP round trip p50", median(single) * 1000, "ms") if single else None
    floor99 = Baseline("bare HTTP round trip p99", percentile(single, 99) * 1000, "ms") if single else None
    paths = [("poll path", run.poll_changes, f"{poll_pace(args):g} changes/s")]
    if args.push_seconds > 0:
        paths.append(("push path", run.push_changes, f"{args.push_rate:g} changes/s"))
    for path, changes, pace in paths:
        pooled = [x for v in latencies(changes, run.versions, run.received).per_target.values() for x in v]
        figs.append(Figure(f"p50 source change → target, {path}, {pace}", median(pooled) * 1000, "ms", floor50))
        figs.append(Figure(f"p99 source change → target, {path}, {pace}", percentile(pooled, 99) * 1000, "ms", floor99))
    for role in sorted(peak):
        if role.startswith(WORKER_PREFIXES):
            figs.append(Figure(f"peak RSS, {role}", peak[role] / 2**20, "MiB"))
    return figs


def poll_pace(args: argparse.Namespace) -> float:
    """The poll path's changes a second over all sources, as asked (they come in bursts)."""
    return round(args.changes * len(SOURCES) / args.interval, 1)


def latency_params(changes: list[Change], run: Run) -> dict[str, Any]:
    lat = latencies(changes, run.versions, run.received)
    return {"changes_asked": len(changes), "samples": {t: len(v) for t, v in lat.per_target.items()},
            "left_out": lat.left_out,
            "ms_by_stage": {"source change → common-database version": _p50_p99_ms(lat.to_version),
                            "version → target receipt": _p50_p99_ms(lat.version_to_target)}}


def _p50_p99_ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(median(values) * 1000), "p99": round(percentile(values, 99) * 1000)} if values else {}


def main(args: argparse.Namespace) -> int:
    plan = DemoPlan(volume=args.volume, invalid_rate=args.invalid_rate, change_rounds=args.rounds,
                    changes_per_round=args.changes, round_interval_s=args.interval, webhook_changes_per_round=0,
                    sync_in_workers=args.sync_in_workers,
                    sync_out_workers={"one": args.one_workers, "lessen360": args.lessen360_workers},
                    rate_per_minute={"one": 6_000_000.0, "lessen360": 6_000_000.0}, target_error_rate=0.0,
                    timeout_s=args.timeout)
    base = Settings.load()
    token = uuid.uuid4().hex[:8]
    run_dir = local_stack_dir() / "bench" / f"end-to-end-{time.strftime('%Y%m%d-%H%M%S')}-{token}"
    namespace = Namespace(suffix=f".bench-{token}", database_schema=f"bench_{token}", mongo_database=f"bench-{token}",
                          ports=free_ports())
    settings = plan_settings(namespace.settings(base), plan)
    started = time.monotonic()
    alone: SyncInAlone | None = None
    try:
        run, peak, bare = run_pipeline(base, plan, namespace, args, run_dir)
        if not args.no_sync_in_alone:
            alone = sync_in_alone(base, plan, namespace, args, run, run_dir)
        consume = bare_consume(kafka_client_config(settings), run.raw_topics)
    finally:
        if not args.keep:
            drop_state(settings, namespace)
    params = {"volume": plan.volume, "invalid_rate": plan.invalid_rate, "rounds": args.rounds,
              "changes_per_round_per_source": args.changes, "interval_s": args.interval,
              "poll_interval_s": args.poll_interval, "push_rate_asked": args.push_rate,
              "push_rate_achieved": round(run.push_rate, 1), "push_seconds": args.push_seconds,
              "push_changes_refused": run.push_refused, "sync_in_workers": plan.sync_in_workers,
              "sync_out_workers": plan.sync_out_workers, "raw_records_initial_load": run.raw_after_load,
              "versions_initial_load": run.versions_after_load,
              "raw_records_consumed_by_baseline": consume.records,
              "received": {t: len(r) for t, r in run.received.items()},
              "latency_poll_path": latency_params(run.poll_changes, run),
              "latency_push_path": latency_params(run.push_changes, run),
              # sync-in inside the pipeline: fed as fast as the connectors read the sources
              "sync_in_in_pipeline_first_to_last_version_s": round(run.last_load_version - run.first_version, 1),
              "sync_in_alone": None if alone is None else {"records": alone.records, "versions": alone.versions,
                                                           "seconds": round(alone.seconds, 1),
                                                           "records_per_s": round(alone.rate, 1)},
              "initial_load_seconds_to_share_of_deliveries": load_timeline(run),
              "initial_load_seconds_to_first": first_of_each(run, consume),
              "bare_http_errors": {t: b["full"].errors for t, b in bare.items()},
              "seconds": round(time.monotonic() - started, 1), "logs": str(run_dir)}
    result = BenchResult("end-to-end", params, figures_of(run, peak, bare, consume, alone, args))
    print(json.dumps(params, indent=2), file=sys.stderr)
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volume", type=int, default=6200, help="units in the generated world (~3.3 source records each)")
    p.add_argument("--invalid-rate", type=float, default=0.02)
    p.add_argument("--rounds", type=int, default=6, help="change rounds of the poll-path phase")
    p.add_argument("--changes", type=int, default=10,
                   help="changes per source and round (keep the pace below what sync-in sustains, or the "
                        "latency is mostly queueing)")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between change rounds")
    p.add_argument("--poll-interval", type=float, default=2.0, help="the connectors' poll interval")
    p.add_argument("--push-rate", type=float, default=100.0, help="changes/s posted to the ingest API")
    p.add_argument("--push-seconds", type=float, default=10.0, help="how long the push-path phase lasts (0: none)")
    p.add_argument("--sync-in-workers", type=int, default=2)
    p.add_argument("--one-workers", type=int, default=2)
    p.add_argument("--lessen360-workers", type=int, default=1)
    p.add_argument("--quiet", type=float, default=15.0, help="seconds without progress that end a phase")
    p.add_argument("--timeout", type=float, default=900.0, help="limit per phase")
    p.add_argument("--no-sync-in-alone", action="store_true", help="skip the sync-in-alone baseline run")
    p.add_argument("--keep", action="store_true", help="keep the run's topics, schema and raw database")
    p.add_argument("--json", help="write the figures here (bench/figures.py format)")
    sys.exit(main(p.parse_args()))
