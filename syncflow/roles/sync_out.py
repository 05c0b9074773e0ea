"""The composition root of a sync-out worker, in one place: settings → engine, codec, producer, client,
transformer, rate limiter, state store → SyncOutWorker. And the process entry point."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import CollectorRegistry

from syncflow.agents.sync_out.batch import BatchProcessor, OutboundStatusSink
from syncflow.agents.sync_out.observe import SyncOutObserver
from syncflow.agents.pauses import PauseRules, PropertyResolver, register_pause_metrics
from syncflow.agents.sync_out.pause_hold import PauseHold
from syncflow.agents.sync_out.rate_limit import RateLimiter
from syncflow.agents.sync_out.raw_status import OutboundStatusWriter
from syncflow.agents.sync_out.registry import binding_for
from syncflow.sinks.common_db import parked
from syncflow.sinks.common_db.target_state import SyncStateStore
from syncflow.agents.sync_out.worker import SyncOutWorker
from syncflow.streams.topics import sync_out_topics
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.avro import codec_for
from syncflow.streams.health import (
    ErrorRate,
    HealthCheck,
    add_consumer_checks,
    kafka_reachable,
    partitions_assigned,
    postgres_reachable,
    target_reachable,
)
from syncflow.streams.metrics import (
    SYNC_OUT_FAILURES,
    SYNC_OUT_REQUESTS,
    SyncflowMetrics,
    add_ops_routes,
    create_metrics,
    register_lag_collector,
)
from syncflow.streams.logging import configure_logging
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import Settings

log = logging.getLogger(__name__)


def outbound_status_sink(settings: Settings) -> OutboundStatusSink | None:
    """The raw store, where the raw documents' outbound status per target is kept."""
    try:
        from syncflow.sinks.raw_store import RawRecordStore
    except ImportError:
        log.warning("raw store not available: raw documents' outbound status is not updated")
        return None
    return RawRecordStore(settings)


def build_worker(
    settings: Settings,
    target: str,
    *,
    outbound: OutboundStatusSink | None = None,
    metrics: SyncflowMetrics | None = None,
    health: HealthCheck | None = None,
) -> SyncOutWorker:
    """A ready-to-run worker of `target` (nothing connects until run())."""
    target_settings = settings.sync_out.targets[target]
    client, transformer = binding_for(settings, target)
    topics = sync_out_topics(settings, target)
    engine = make_engine(settings)
    writer = OutboundStatusWriter(outbound, settings.sync_out.outbound_flush_s) if outbound is not None else None
    processor = BatchProcessor(
        target, target_settings, settings.sync_out,
        group=topics.group, retry_topics=topics.tiers, dependency_topic=topics.dependency, dlq_topic=topics.dlq,
        client=client, transformer=transformer,
        state=SyncStateStore(engine, target, settings.database_schema),
        limiter=RateLimiter(engine, target, target_settings.rate_per_minute, target_settings.rate_burst_s),
        producer=ReliableProducer(settings),
        outbound=writer,
    )
    if metrics is not None:
        metrics.db_pools.watch(f"sync-out.{target}", engine.pool.checkedout)  # type: ignore[attr-defined]
        if writer is not None:
            metrics.backlogs.watch(f"raw-store.{target}", writer.backlog)
        metrics.backlogs.watch(f"parked.{target}", lambda: parked.waiting(engine, target))
    observer = SyncOutObserver(target, topics.group, topics.dlq, target_settings.rate_per_minute, metrics, health)
    hold = PauseHold(PauseRules(engine, "sync-out", target, settings.ops.pause_refresh_s), PropertyResolver(engine),
                     settings.ops.pause_hold_max)
    return SyncOutWorker(settings, target, topics, codec_for(settings), processor, observer, hold)


def add_observability(settings: Settings, worker: SyncOutWorker, registry: CollectorRegistry, health: HealthCheck) -> None:
    """/metrics, /health and /ready on the worker's web app, with its readiness checks."""
    topics = worker.topics
    lag = register_lag_collector(registry, settings, {topics.group: topics.changes + topics.retries}, [topics.dlq])
    health.add("kafka", kafka_reachable(settings))
    health.add("postgres", postgres_reachable(worker.processor.state.engine))
    health.add("partitions", partitions_assigned(lambda: len(worker.assigned)))
    health.add("target", target_reachable(worker.processor.target_settings.base_url, settings.ops.check_timeout_s))
    rate = ErrorRate(registry, SYNC_OUT_REQUESTS, SYNC_OUT_FAILURES, settings.ops.error_rate_window_s)
    add_consumer_checks(health, settings.ops, lambda: lag.total_lag(topics.group), rate)
    if worker.hold.rules is not None:
        register_pause_metrics(registry, worker.hold.rules, lambda: worker.hold.count)
    add_ops_routes(worker.web_app, health, registry)


async def serve_sync_out(settings: Settings, target: str, *, web_port: int | None = None) -> None:
    """Run a worker and its web server until SIGTERM/SIGINT; then finish, commit and exit."""
    from syncflow.sinks.common_db.migrate import migrate

    await asyncio.to_thread(migrate, settings)
    registry, health = CollectorRegistry(), HealthCheck(settings.ops)
    metrics = create_metrics(registry)
    outbound = outbound_status_sink(settings)
    worker = build_worker(settings, target, outbound=outbound, metrics=metrics, health=health)
    add_observability(settings, worker, registry, health)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    runner = web.AppRunner(worker.web_app, access_log=None, handle_signals=False)
    await runner.setup()
    port = settings.sync_out.web_port if web_port is None else web_port
    await web.TCPSite(runner, settings.http_host, port).start()
    try:
        await worker.run()
    finally:
        await runner.cleanup()
        if outbound is not None and hasattr(outbound, "close"):
            outbound.close()


def run_sync_out(settings: Settings, target: str) -> None:
    """Process entry point of `syncflow run sync-out --target T`."""
    configure_logging(settings)
    asyncio.run(serve_sync_out(settings, target))
