"""The demo: the whole pipeline on the local stack, as its users run it.

Source emulators with their connectors and the push ingest API feed a day of changes; sync-in
workers and a sync-out worker group per target carry them to the target emulators; the run
ends when the reconciliation holds (every source record is a version or a sync-in DLQ entry,
every change is delivered or parked with its reason) and prints the summary."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from syncflow.agents.rules import RulesEngine
from syncflow.streams.admin import admin_client, topic_partitions, watermarks
from syncflow.ops.progress import progress_report
from syncflow.ops.status import consumer_groups, dlq_depth, dlq_topics, lag_by_group
from syncflow.demo.namespace import Namespace
from syncflow.demo.reconcile import Reconciliation, get_json, reconcile
from syncflow.demo.supervisor import RoleSpec, Supervisor
from syncflow.sinks.common_db.counts import version_count
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.sinks.raw_store import RawRecordStore
from syncflow.streams.admin import admin_client, create_topics, delete_topics
from syncflow.streams.avro import codec_for
from syncflow.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, target_dlq

SOURCES = ("yardi", "realpage", "insight", "lessen360")


@dataclass(frozen=True)
class DemoPlan:
    """How big and how busy the demo's day is, and how many workers carry it."""

    seed: int = 42
    volume: int = 1000  # units in the generated world: about 3.3 entities per unit
    invalid_rate: float = 0.02
    change_rounds: int = 6
    changes_per_round: int = 150  # per source and round
    round_interval_s: float = 4.0
    webhook_changes_per_round: int = 20
    sync_in_workers: int = 2
    sync_out_workers: dict[str, int] = field(default_factory=lambda: {"one": 2, "lessen360": 1})
    rate_per_minute: dict[str, float] = field(default_factory=lambda: {"one": 12000.0, "lessen360": 6000.0})
    retry_delays_s: tuple[float, ...] = (2.0, 5.0, 10.0)
    dependency_retry_delay_s: float = 5.0  # dependants wait up to 40 x 5 s for what they reference
    dependency_max_attempts: int = 40
    target_error_rate: float = 0.02
    timeout_s: float = 900.0
    max_crash_restarts: int = 5  # per role; a role that exits more often fails the run
    start_timeout_s: float = 300.0  # for each role to answer; a loaded 2-core machine needs minutes


def role_env(plan: DemoPlan) -> dict[str, str]:
    """Settings every role of the demo shares (the demo runs faster than production)."""
    env = {
        "SYNCFLOW_SYNC_OUT__RETRY_DELAYS_S": json.dumps(list(plan.retry_delays_s)),
        "SYNCFLOW_SYNC_OUT__DEPENDENCY_RETRY_DELAY_S": str(plan.dependency_retry_delay_s),
        "SYNCFLOW_SYNC_OUT__DEPENDENCY_MAX_ATTEMPTS": str(plan.dependency_max_attempts),
        "SYNCFLOW_CONNECTORS__EMULATOR_SEED": str(plan.seed),
        "SYNCFLOW_CONNECTORS__EMULATOR_VOLUME": str(plan.volume),
        "SYNCFLOW_CONNECTORS__EMULATOR_INVALID_RATE": str(plan.invalid_rate),
    }
    for target, rate in plan.rate_per_minute.items():
        env[f"SYNCFLOW_SYNC_OUT__TARGETS__{target.upper()}__RATE_PER_MINUTE"] = str(rate)
    for source in SOURCES:
        env[f"SYNCFLOW_CONNECTORS__SOURCES__{source.upper()}__POLL_INTERVAL_S"] = "2"
    return env


def plan_settings(settings: Settings, plan: DemoPlan) -> Settings:
    """The in-process view of what role_env() tells the roles (topics, checks)."""
    targets = {name: t.model_copy(update={"rate_per_minute": plan.rate_per_minute.get(name, t.rate_per_minute)})
               for name, t in settings.sync_out.targets.items()}
    return settings.model_copy(update={"sync_out": settings.sync_out.model_copy(update={
        "retry_delays_s": list(plan.retry_delays_s), "targets": targets})})


def role_specs(settings: Settings, plan: DemoPlan) -> list[RoleSpec]:
    specs = [RoleSpec("emulators", ["run", "emulators", "--seed", str(plan.seed), "--volume", str(plan.volume),
                                    "--invalid-rate", str(plan.invalid_rate)])]
    specs.append(RoleSpec("ingest", ["run", "ingest"], settings.ingest.port))
    for i, source in enumerate(SOURCES):
        specs.append(RoleSpec(f"connector-{source}", ["run", "connector", "--source", source],
                              settings.ops.connector_web_port + i))
    for i in range(plan.sync_in_workers):
        port = settings.sync_in.web_port + i
        specs.append(RoleSpec(f"sync-in-{i + 1}", ["run", "sync-in", "--web-port", str(port)], port))
    port = settings.sync_out.web_port
    for target, workers in plan.sync_out_workers.items():
        for i in range(workers):
            specs.append(RoleSpec(f"sync-out-{target}-{i + 1}", ["run", "sync-out", "--target", target,
                                                                 "--web-port", str(port)], port))
            port += 1
    return specs


def drop_state(settings: Settings, namespace: Namespace) -> None:
    """Delete the namespace's topics, consumer groups, common database schema and raw store
    database. `settings` are already the namespace's."""
    names = [spec.name for spec in namespace.topics(settings)]
    admin = admin_client(settings)
    groups = list(consumer_groups(settings))
    existing_groups = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    _delete_groups(admin, [g for g in groups if g in existing_groups])
    delete_topics(settings, [n for n in names if n in admin.list_topics(timeout=30).topics])
    for _ in range(60):  # deletion is asynchronous on the broker
        if not set(names) & set(admin.list_topics(timeout=30).topics):
            break
        time.sleep(0.5)
    drop_stores(settings)


def drop_stores(settings: Settings) -> None:
    """Drop the common database schema and the raw-store database `settings` name."""
    engine = make_engine(settings, pool_size=1)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    engine.dispose()
    client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=10000)
    client.drop_database(settings.mongo_database)
    client.close()


def reset_state(settings: Settings, namespace: Namespace) -> None:
    """A fresh day: the namespace's topics, groups, common database schema (with the
    connector cursors), raw store start empty. `settings` are already the namespace's."""
    drop_state(settings, namespace)
    create_topics(settings, namespace.topics(settings))
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.database_schema}"'))
    engine.dispose()
    migrate(settings)
    store = RawRecordStore(settings)
    store.ensure_indexes()
    store.close()


def _delete_groups(admin: AdminClient, groups: list[str], timeout: float = 90.0) -> None:
    """Delete consumer groups, waiting out members of an earlier run that the broker has
    not yet expired (a killed worker stays a member until its session times out)."""
    deadline = time.monotonic() + timeout
    while groups:
        remaining = []
        for group, future in admin.delete_consumer_groups(groups).items():
            try:
                future.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                    raise
                remaining.append(group)
        groups = remaining
        if groups:
            time.sleep(2)


def post_json(url: str, body: dict, timeout: float = 30.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


@dataclass
class Progress:
    """What the live table shows."""

    raw_records: int = 0
    versions: int = 0
    sync_in_dlq: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    target_dlq: dict[str, int] = field(default_factory=dict)
    retries_waiting: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    phase: str = ""


def read_progress(settings: Settings, engine: Engine, phase: str, delivered: Mapping[str, int] | None = None) -> Progress:
    """The pipeline's counts now. `delivered`: the targets' applied counts to show instead of
    asking the target emulators (their answer carries their whole state: at tens of thousands
    of records, asking every second costs the emulators' process most of its time)."""
    admin = admin_client(settings)
    groups = consumer_groups(settings)
    lags = {g.group: g.lag for g in lag_by_group(admin, groups)}
    dlqs = dlq_depth(admin, dlq_topics(settings))
    with engine.connect() as conn:
        versions = version_count(conn)
    p = Progress(versions=versions, lag=lags, phase=phase)
    p.sync_in_dlq = dlqs.get(SYNC_IN_DLQ + settings.sync_in.topic_suffix, 0)
    raw_topics = groups[settings.sync_in.group_id]
    p.raw_records = sum(high - low for low, high in watermarks(admin, topic_partitions(admin, raw_topics)).values())
    for target, conf in settings.sync_out.targets.items():
        if delivered is not None and target in delivered:
            p.delivered[target] = delivered[target]
        else:
            p.delivered[target] = get_json(f"{conf.base_url.rstrip('/')}/_emulator/counters").get("applied", 0)
        p.target_dlq[target] = dlqs.get(target_dlq(target) + settings.sync_out.topic_suffix, 0)
    return p


def progress_table(p: Progress, elapsed: float) -> Table:
    table = Table(title=f"syncflow demo — {p.phase} — {elapsed:,.0f} s", show_lines=False)
    table.add_column("stage")
    table.add_column("count", justify="right")
    table.add_row("records on raw topics", f"{p.raw_records:,}")
    table.add_row("versions in the common database", f"{p.versions:,}")
    table.add_row("sync-in.dlq", f"{p.sync_in_dlq:,}")
    for target in p.delivered:
        table.add_row(f"{target}: requests applied", f"{p.delivered[target]:,}")
        table.add_row(f"{target}: DLQ", f"{p.target_dlq[target]:,}")
    for group, lag in sorted(p.lag.items()):
        table.add_row(f"lag {group}", f"{lag:,}")
    return table


def progress_line(p: Progress) -> str:
    """The progress table in one line (for a log or a pipe)."""
    parts = [p.phase, f"raw {p.raw_records:,}", f"versions {p.versions:,}", f"sync-in.dlq {p.sync_in_dlq:,}"]
    parts += [f"{t} applied {p.delivered[t]:,} dlq {p.target_dlq.get(t, 0):,}" for t in p.delivered]
    parts.append(f"lag {sum(p.lag.values()):,}")
    return ", ".join(parts)


def summary_table(result: Reconciliation) -> Table:
    table = Table(title="reconciliation", show_lines=False)
    table.add_column("check")
    table.add_column("count", justify="right")
    for name, value in result.counts.items():
        table.add_row(name, f"{value:,}")
    table.add_row("problems", str(len(result.problems)), style="red" if result.problems else "green")
    return table


def feed_changes(settings: Settings, plan: DemoPlan, round_no: int) -> None:
    """One round of a day's changes at every source, and a Lessen360 webhook push."""
    for source in SOURCES:
        base = settings.connectors.sources[source].base_url.rstrip("/")
        post_json(f"{base}/_emulator/changes", {"count": plan.changes_per_round})
    if plan.webhook_changes_per_round:
        base = settings.connectors.sources["lessen360"].base_url.rstrip("/")
        post_json(f"{base}/_emulator/webhook", {
            "url": f"http://127.0.0.1:{settings.ingest.port}/ingest/lessen360",
            "api_key": settings.ingest.api_keys["lessen360"],
            "count": plan.webhook_changes_per_round,
        })


def run_demo(base: Settings, plan: DemoPlan, run_dir: Path, *, namespace: Namespace = Namespace(),
             keep_running: bool = False, strict: bool = False, console: Console | None = None,
             on_tick: Callable[[Supervisor, float], None] | None = None,
             injected: Mapping[str, tuple[str, ...]] | None = None) -> Reconciliation:
    """Run the pipeline in `namespace` until it reconciles or times out. `on_tick(supervisor,
    elapsed)` is called every second (the fault-injection suite kills and restarts there);
    `injected` names the bad records it produced and their DLQ categories (see reconcile)."""
    console = console or Console()
    settings = plan_settings(namespace.settings(base), plan)
    console.print(f"[bold]syncflow demo[/]: world seed {plan.seed}, {plan.volume} units, "
                  f"{plan.invalid_rate:.0%} invalid records; logs in {run_dir}")
    console.print("resetting topics, consumer groups, the common database and the raw store …")
    reset_state(settings, namespace)
    env = {**role_env(plan), **namespace.env(), **namespace.port_env(base)}
    supervisor = Supervisor(run_dir, env)
    started = time.monotonic()
    try:
        for spec in role_specs(settings, plan):
            supervisor.start(spec)
        wait_for_emulators(settings, supervisor, plan.start_timeout_s)
        for target in settings.sync_out.targets:
            post_json(f"{settings.sync_out.targets[target].base_url.rstrip('/')}/_emulator/faults",
                      {"error_rate": plan.target_error_rate})
        for role in supervisor.roles.values():
            if not role.wait_ready(plan.start_timeout_s, path="/health"):
                raise RuntimeError(f"{role.spec.name} did not start:\n{role.log_tail()}")
        engine = make_engine(settings, pool_size=2)
        rules = RulesEngine.from_file(settings.sync_in.rules_file)
        codec = codec_for(settings)
        result = Reconciliation()
        next_round, rounds_done, last_check = time.monotonic(), 0, 0.0
        # The targets' applied counts are asked for once per progress interval, not every second.
        delivered: dict[str, int] | None = None
        delivered_at = 0.0
        with progress_report("demo", console, settings.ops.progress_interval_s, table=True) as live:
            while True:
                now = time.monotonic()
                if rounds_done < plan.change_rounds and now >= next_round:
                    feed_changes(settings, plan, rounds_done)
                    rounds_done += 1
                    next_round = now + plan.round_interval_s
                phase = f"change round {rounds_done}/{plan.change_rounds}" if rounds_done < plan.change_rounds \
                    else "draining"
                try:
                    fresh = now - delivered_at >= settings.ops.progress_interval_s
                    progress = read_progress(settings, engine, phase, None if fresh else delivered)
                    if fresh:
                        delivered, delivered_at = dict(progress.delivered), now
                except (KafkaException, OSError, SQLAlchemyError) as exc:  # a service is restarting
                    progress = Progress(phase=f"{phase} (waiting: {type(exc).__name__})", lag={"?": 1})
                live.update(renderable=progress_table(progress, now - started), status=progress_line(progress))
                if on_tick:
                    on_tick(supervisor, now - started)
                broken = supervisor.restart_exited(plan.max_crash_restarts)
                if broken:
                    raise RuntimeError(f"{broken[0].spec.name} exited {len(broken[0].crashes)} times "
                                       f"(exit codes {broken[0].crashes}):\n{broken[0].log_tail()}")
                quiet = rounds_done >= plan.change_rounds and not any(progress.lag.values())
                if quiet and now - last_check > 5:
                    last_check = now
                    result = reconcile(settings, engine, rules, codec, strict=strict, injected=injected)
                    if result.ok:
                        break
                if now - started > plan.timeout_s:
                    result = reconcile(settings, engine, rules, codec, strict=strict, injected=injected)
                    break
                time.sleep(1)
        console.print(summary_table(result))
        for problem in result.problems[:30]:
            console.print(f"[red]{problem}")
        for role in supervisor.roles.values():
            if role.crashes:
                console.print(f"{role.spec.name} exited on its own {len(role.crashes)} time(s) "
                              f"(exit codes {role.crashes}) and was started again; see {role.log_path}")
        console.print(f"finished in {time.monotonic() - started:,.0f} s")
        _print_urls(console, supervisor)
        if keep_running:
            console.print("[bold]--keep-running[/]: everything stays up; Ctrl-C stops it.")
            while True:
                time.sleep(3600)
        return result
    except KeyboardInterrupt:
        console.print("stopping …")
        return Reconciliation(problems=["interrupted"])
    finally:
        supervisor.stop_all()


def wait_for_emulators(settings: Settings, supervisor: Supervisor, timeout: float = 300.0) -> None:
    """Until our emulators process says it is ready and answers: another run holding the same
    ports would answer too, so the answer alone proves nothing."""
    deadline = time.monotonic() + timeout
    role = supervisor["emulators"]
    url = f"{settings.connectors.sources['yardi'].base_url.rstrip('/')}/_emulator/stats"
    while time.monotonic() < deadline and role.alive:
        if "emulators ready" in role.output():
            try:
                get_json(url, timeout=2)
                return
            except OSError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"the emulators did not start:\n{role.log_tail()}")


def _print_urls(console: Console, supervisor: Supervisor) -> None:
    for role in supervisor.roles.values():
        if role.spec.web_port:
            base = f"http://127.0.0.1:{role.spec.web_port}"
            console.print(f"{role.spec.name:24} {base}/metrics  {base}/health  {base}/ready")
