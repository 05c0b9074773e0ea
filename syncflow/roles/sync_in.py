"""The composition root of a sync-in worker: its Faust app, and the one place its parts are
wired together: codec, rules, raw store, common database, producers, metrics and health.
Nothing here runs at import."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from sqlalchemy import Engine

from syncflow.agents.hashing import content_hash
from syncflow.agents.outbox import OutboxRelay, outbox_backlog
from syncflow.agents.rules import RulesEngine
from syncflow.agents.sync_in import register_sync_in_agent
from syncflow.agents.sync_in_handler import SyncInHandler
from syncflow.agents.sync_in_pause import register_source_hold_metrics, source_hold
from syncflow.streams.topics import SyncInTopics
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.sinks.raw_store import RawRecordStore
from syncflow.streams.avro import codec_for
from syncflow.streams.health import (
    ErrorRate,
    HealthCheck,
    add_consumer_checks,
    kafka_reachable,
    mongo_reachable,
    partitions_assigned,
    postgres_reachable,
)
from syncflow.streams.metrics import SYNC_IN_FAILURES, SYNC_IN_REQUESTS, create_metrics, register_lag_collector
from syncflow.streams.producer import ReliableProducer
from syncflow.streams.security import faust_credentials
from syncflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SyncInRuntime:
    """Everything a sync-in worker holds open."""

    settings: Settings
    topics: SyncInTopics
    handler: SyncInHandler
    sweeper: OutboxRelay
    raw_store: RawRecordStore
    engine: Engine
    producers: list[ReliableProducer]
    health: HealthCheck
    registry: CollectorRegistry

    def close(self) -> None:
        for producer in self.producers:
            producer.close(10.0)
        self.handler.close()
        self.raw_store.close()
        self.engine.dispose()


def build_sync_in(settings: Settings, topics: SyncInTopics | None = None) -> SyncInRuntime:
    """Create the clients and the handler (connections open lazily, on first use)."""
    topics = topics or SyncInTopics.from_settings(settings)
    codec = codec_for(settings)
    rules = RulesEngine.from_file(settings.sync_in.rules_file)
    raw_store = RawRecordStore(settings)
    engine = make_engine(settings)
    # one producer per thread that waits on its acks: the batch's versions (commit stage),
    # its dead letters (finish stage, alongside the next batch's commit) and the sweeper
    batch_producer, dead_letter_producer, sweep_producer = (ReliableProducer(settings) for _ in range(3))
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    metrics.db_pools.watch("common_db", lambda: int(engine.pool.checkedout()))  # type: ignore[attr-defined]
    metrics.backlogs.watch("outbox", outbox_backlog(engine))
    handler = SyncInHandler(
        topics=topics,
        group_id=settings.sync_in.group_id,
        raw_store=raw_store,
        engine=engine,
        producer=dead_letter_producer,
        relay=OutboxRelay(engine, batch_producer, codec, topics.changes),
        codec=codec,
        transform=rules.transform,
        content_hash=content_hash,
        metrics=metrics,
        retry_backoff_max_s=settings.sync_in.retry_backoff_max_s,
        max_message_bytes=settings.kafka_max_message_bytes,
        step_seconds=Counter(
            "syncflow_sync_in_step_seconds", "Time sync-in spent in each step of its batches", ["step"], registry=registry
        ),
    )
    return SyncInRuntime(
        settings=settings,
        topics=topics,
        handler=handler,
        sweeper=OutboxRelay(engine, sweep_producer, codec, topics.changes),
        raw_store=raw_store,
        engine=engine,
        producers=[batch_producer, dead_letter_producer, sweep_producer],
        health=HealthCheck(settings.ops),
        registry=registry,
    )


def _brokers(settings: Settings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",") if server.strip()]


def make_app(settings: Settings, runtime: SyncInRuntime | None = None, *, datadir: Path | None = None) -> faust.App:
    """The sync-in Faust app: app id and consumer group `settings.sync_in.group_id`, one
    agent over every raw topic, the web server on `settings.sync_in.web_port`."""
    runtime = runtime or build_sync_in(settings)
    group = settings.sync_in.group_id
    datadir = datadir or Path(tempfile.gettempdir()) / "syncflow-faust" / group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group,
        broker=_brokers(settings),
        broker_credentials=faust_credentials(settings),  # settings.kafka_security (TLS, SASL)
        datadir=str(datadir),
        store="memory://",
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,  # the catalogue creates topics (`syncflow topics create`)
        topic_disable_leader=True,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.sync_in.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.sync_in.session_timeout_s / 10),
        broker_rebalance_timeout=max(10.0, settings.sync_in.session_timeout_s),
        stream_buffer_maxsize=max(settings.sync_in.read_ahead_events, 2 * settings.sync_in.batch_size),
        consumer_max_fetch_size=settings.sync_in.fetch_bytes_per_partition,
        web_enabled=True,
        web_port=settings.sync_in.web_port,
        web_bind=settings.http_host,
        web_host="127.0.0.1",
    )
    hold = source_hold(settings, runtime.engine, runtime.handler.codec, runtime.topics.raw)  # syncflow pause --source
    register_sync_in_agent(app, settings, runtime.topics, runtime.handler, runtime.sweeper, runtime.health, hold)
    register_source_hold_metrics(runtime.registry, hold)
    _add_ops_pages(app, runtime)

    app.runtime = runtime  # type: ignore[attr-defined]
    return app


def _add_ops_pages(app: faust.App, runtime: SyncInRuntime) -> None:
    health = runtime.health
    health.add("kafka", kafka_reachable(runtime.settings))
    health.add("postgres", postgres_reachable(runtime.engine))
    health.add("mongo", mongo_reachable(runtime.raw_store.client))
    health.add("partitions", partitions_assigned(lambda: len(app.consumer.assignment())))
    settings, group = runtime.settings, runtime.settings.sync_in.group_id
    lag = register_lag_collector(runtime.registry, settings, {group: list(runtime.topics.raw)}, [runtime.topics.dlq])
    rate = ErrorRate(runtime.registry, SYNC_IN_REQUESTS, SYNC_IN_FAILURES, settings.ops.error_rate_window_s)
    add_consumer_checks(health, settings.ops, lambda: lag.total_lag(group), rate)

    async def pipeline() -> tuple[bool, str]:
        return runtime.handler.state.ok()

    health.add("pipeline", pipeline)

    @app.page("/health")
    async def liveness(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        report = await health.liveness()
        return web.json(report.to_dict(), status=200 if report.ok else 503)

    @app.page("/ready")
    async def readiness(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        report = await health.readiness()
        return web.json(report.to_dict(), status=200 if report.ok else 503)

    @app.page("/metrics")
    async def metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # as a header: aiohttp refuses a content_type argument that carries a charset
        return web.bytes(generate_latest(runtime.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def prepare_stores(settings: Settings, runtime: SyncInRuntime) -> None:
    """Migrations and raw-store indexes, before the worker consumes anything."""
    migrate(settings)
    runtime.raw_store.ensure_indexes()


def run_sync_in(settings: Settings, topics: SyncInTopics | None = None, *, loglevel: str | None = None) -> None:
    """Run a sync-in worker until it is stopped. A batch not finished when it stops is not
    acked, so whoever takes the partition next does it again (every step is idempotent)."""
    runtime = build_sync_in(settings, topics)
    prepare_stores(settings, runtime)
    app = make_app(settings, runtime)
    if loglevel:
        logging.getLogger().setLevel(loglevel.upper())
    # the root handler is configure_logging's (plain or JSON lines with the trace id): Faust
    # would replace it with its own colour handler
    worker = faust.Worker(app, loglevel=loglevel or settings.log_level.lower(), redirect_stdouts=False,
                          override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        runtime.close()
