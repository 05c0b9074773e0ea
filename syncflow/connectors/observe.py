"""Metrics and health of the source-facing workers (connectors, the ingest API): what they
count, and the ops web server (/metrics, /health, /ready) a connector process serves.
Without metrics (tests, bulk import) every call is a no-op."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from syncflow.streams.health import HealthCheck, kafka_reachable
from syncflow.streams.metrics import SyncflowMetrics, add_ops_routes, create_metrics
from syncflow.settings import Settings
from syncflow.streams.topics import SOURCES


@dataclass
class Observer:
    metrics: SyncflowMetrics | None = None
    health: HealthCheck | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def source_call(self, source: str, operation: str, seconds: float) -> None:
        """Latency of one call to a source API (external system latency)."""
        if self.metrics:
            self.metrics.external_latency_seconds.labels(source, operation).observe(seconds)

    def published(self, group: str, topic: str, n: int) -> None:
        if self.metrics and n:
            self.metrics.record_processed(group, topic, n)
        if self.health:
            self.health.progress()

    def dead_lettered(self, topic: str, category: str, n: int) -> None:
        if self.metrics and n:
            self.metrics.dlq_records.labels(topic, category).inc(n)

    def heartbeat(self) -> None:
        if self.health:
            self.health.heartbeat()


def worker_observer(settings: Settings) -> Observer:
    """Metrics on a fresh registry and a health check that asks Kafka; once per process."""
    registry = CollectorRegistry()
    health = HealthCheck(settings.ops)
    health.add("kafka", kafka_reachable(settings))
    return Observer(create_metrics(registry), health, registry)


def connector_web_port(settings: Settings, source: str) -> int:
    """Each source's connector gets its own port: ops.connector_web_port + the source's index."""
    return settings.ops.connector_web_port + (SOURCES.index(source) if source in SOURCES else len(SOURCES))


async def start_ops_server(observer: Observer, host: str, port: int) -> web.AppRunner:
    """Serve /metrics, /health and /ready; the caller cleans the runner up."""
    assert observer.health is not None
    app = web.Application()
    add_ops_routes(app, observer.health, observer.registry)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
