"""Every Prometheus metric syncflow exposes, declared in one place so that code, dashboards
and docs agree (the seed's §8.2 set), plus the `/metrics`, `/health`, `/ready` routes each
worker mounts on its web server.

Nothing is registered at import time: a worker calls `create_metrics(registry)` once at
start-up; tests pass a fresh CollectorRegistry."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from syncflow.streams.health import HealthCheck
from syncflow.settings import Settings

# -- the names; dashboards and deploy/ tests read this list -------------------------------
SYNC_IN_REQUESTS = "syncflow_sync_in_requests"
SYNC_IN_SUCCESS = "syncflow_sync_in_success"
SYNC_IN_FAILURES = "syncflow_sync_in_failures"
SYNC_IN_PROCESSING_SECONDS = "syncflow_sync_in_processing_seconds"
SYNC_OUT_REQUESTS = "syncflow_sync_out_requests"
SYNC_OUT_SUCCESS = "syncflow_sync_out_success"
SYNC_OUT_FAILURES = "syncflow_sync_out_failures"
SYNC_OUT_PROCESSING_SECONDS = "syncflow_sync_out_processing_seconds"
RECORDS_PROCESSED = "syncflow_records_processed"
PROCESSING_RATE = "syncflow_processing_rate"
RETRIES = "syncflow_retries"
DLQ_RECORDS = "syncflow_dlq_records"
EXTERNAL_LATENCY_SECONDS = "syncflow_external_latency_seconds"
RATE_LIMIT_USAGE = "syncflow_rate_limit_usage_ratio"
RATE_LIMITED = "syncflow_rate_limited"
CONSUMER_LAG = "syncflow_consumer_lag"
DLQ_DEPTH = "syncflow_dlq_depth"
DB_CONNECTIONS_IN_USE = "syncflow_db_connections_in_use"
FRESHNESS_SECONDS = "syncflow_freshness_seconds"
BACKLOG = "syncflow_backlog"
BACKLOG_OLDEST_SECONDS = "syncflow_backlog_oldest_seconds"

METRIC_NAMES: tuple[str, ...] = (
    SYNC_IN_REQUESTS, SYNC_IN_SUCCESS, SYNC_IN_FAILURES, SYNC_IN_PROCESSING_SECONDS,
    SYNC_OUT_REQUESTS, SYNC_OUT_SUCCESS, SYNC_OUT_FAILURES, SYNC_OUT_PROCESSING_SECONDS,
    RECORDS_PROCESSED, PROCESSING_RATE, RETRIES, DLQ_RECORDS, EXTERNAL_LATENCY_SECONDS,
    RATE_LIMIT_USAGE, RATE_LIMITED, CONSUMER_LAG, DLQ_DEPTH, DB_CONNECTIONS_IN_USE,
    FRESHNESS_SECONDS, BACKLOG, BACKLOG_OLDEST_SECONDS,
)  # fmt: skip
# Suffixes Prometheus adds in the exposition format (counter _total, histogram series).
EXPOSITION_SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Source change -> target applied: seconds to a day. The freshness SLO bounds in
# deploy/prometheus/alerts.yml must be among these (a unit test checks).
FRESHNESS_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
                     7200.0, 14400.0, 43200.0, 86400.0)  # fmt: skip
LagRow = tuple[str, str, int, int]  # (group, topic, partition, lag)


def exposed_name_to_metric(name: str) -> str:
    """`syncflow_sync_in_requests_total` -> `syncflow_sync_in_requests` (for dashboard checks)."""
    for suffix in EXPOSITION_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in METRIC_NAMES:
            return name[: -len(suffix)]
    return name


class RateWindow:
    """Events per second over a sliding window: the seed's 'queue processing rate' gauge."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._window_s, self._clock = window_s, clock
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def mark(self, n: int = 1) -> float:
        now = self._clock()
        with self._lock:
            self._events.append((now, n))
            return self._rate(now)

    def rate(self) -> float:
        with self._lock:
            return self._rate(self._clock())

    def _rate(self, now: float) -> float:
        while self._events and self._events[0][0] < now - self._window_s:
            self._events.popleft()
        return sum(n for _, n in self._events) / self._window_s


class DbPoolCollector(Collector):
    """DB connections in use, read on scrape from callables the worker registers
    (e.g. `db_pools.watch("common", engine.pool.checkedout)`)."""

    def __init__(self) -> None:
        self._pools: dict[str, Callable[[], int]] = {}

    def watch(self, pool: str, checked_out: Callable[[], int]) -> None:
        self._pools[pool] = checked_out

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(DB_CONNECTIONS_IN_USE, "Database connections checked out", labels=["pool"])
        for pool, fn in self._pools.items():
            family.add_metric([pool], float(fn()))
        yield family


Backlog = tuple[int, float | None]  # (items waiting, age in seconds of the oldest, None when unknown)


class BacklogCollector(Collector):
    """Work accepted but not finished outside Kafka (the outbox, the raw store's status
    writes), read on scrape from callables the worker registers, each cached `cache_s`; a
    failing read keeps the last good value."""

    def __init__(self, cache_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._reads: dict[str, Callable[[], Backlog]] = {}
        self._last: dict[str, tuple[float | None, Backlog | None]] = {}
        self.cache_s, self._clock = cache_s, clock
        self._lock = threading.Lock()

    def watch(self, queue: str, read: Callable[[], Backlog]) -> None:
        self._reads[queue] = read

    def read(self, queue: str) -> Backlog | None:
        with self._lock:
            at, value = self._last.get(queue, (None, None))
            if at is not None and self._clock() - at < self.cache_s:
                return value
            try:
                value = self._reads[queue]()
            except Exception:  # noqa: BLE001 - a store hiccup must not break /metrics
                pass
            self._last[queue] = (self._clock(), value)
            return value

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(BACKLOG, "Items accepted and not yet handed on, per queue", labels=["queue"])
        oldest = GaugeMetricFamily(BACKLOG_OLDEST_SECONDS, "Age of the oldest item waiting, per queue", labels=["queue"])
        for queue in list(self._reads):
            value = self.read(queue)
            if value is None:
                continue
            count.add_metric([queue], float(value[0]))
            oldest.add_metric([queue], float(value[1] or 0.0))
        yield count
        yield oldest


@dataclass
class SyncflowMetrics:
    """The metric objects a worker updates. Labels: source/target, entity_type, category."""

    registry: CollectorRegistry
    sync_in_requests: Counter
    sync_in_success: Counter
    sync_in_failures: Counter
    sync_in_processing_seconds: Histogram
    sync_out_requests: Counter
    sync_out_success: Counter
    sync_out_failures: Counter
    sync_out_processing_seconds: Histogram
    records_processed: Counter
    processing_rate: Gauge
    retries: Counter
    dlq_records: Counter
    external_latency_seconds: Histogram
    rate_limit_usage: Gauge
    rate_limited: Counter
    db_pools: DbPoolCollector
    freshness_seconds: Histogram
    backlogs: BacklogCollector
    _rates: dict[str, RateWindow] = field(default_factory=dict, init=False, repr=False)

    def record_processed(self, group: str, topic: str, n: int = 1) -> None:
        """Count records a consumer group finished, and refresh its processing-rate gauge."""
        self.records_processed.labels(group, topic).inc(n)
        window = self._rates.setdefault(group, RateWindow())
        self.processing_rate.labels(group).set(window.mark(n))


def create_metrics(registry: CollectorRegistry) -> SyncflowMetrics:
    """Create and register every metric object on `registry` (once per process)."""
    r = registry
    return SyncflowMetrics(
        registry=r,
        sync_in_requests=Counter(SYNC_IN_REQUESTS, "Records sync-in started", ["source", "entity_type"], registry=r),
        sync_in_success=Counter(SYNC_IN_SUCCESS, "Records sync-in finished", ["source", "entity_type"], registry=r),
        sync_in_failures=Counter(
            SYNC_IN_FAILURES, "Records sync-in sent to its DLQ", ["source", "entity_type", "category"], registry=r
        ),
        sync_in_processing_seconds=Histogram(
            SYNC_IN_PROCESSING_SECONDS, "Time to process one sync-in record", ["source", "entity_type"],
            buckets=LATENCY_BUCKETS, registry=r,
        ),
        sync_out_requests=Counter(SYNC_OUT_REQUESTS, "Change events sync-out started", ["target", "entity_type"], registry=r),
        sync_out_success=Counter(
            SYNC_OUT_SUCCESS, "Change events done (delivered or skipped)", ["target", "entity_type", "outcome"], registry=r
        ),
        sync_out_failures=Counter(
            SYNC_OUT_FAILURES, "Change events that failed an attempt", ["target", "entity_type", "category"], registry=r
        ),
        sync_out_processing_seconds=Histogram(
            SYNC_OUT_PROCESSING_SECONDS, "Time to process one change event for a target", ["target", "entity_type"],
            buckets=LATENCY_BUCKETS, registry=r,
        ),
        records_processed=Counter(RECORDS_PROCESSED, "Records a consumer group finished", ["group", "topic"], registry=r),
        processing_rate=Gauge(PROCESSING_RATE, "Records per second over the last minute", ["group"], registry=r),
        retries=Counter(RETRIES, "Change events sent to a retry tier", ["target", "tier"], registry=r),
        dlq_records=Counter(DLQ_RECORDS, "Records written to a DLQ", ["topic", "category"], registry=r),
        external_latency_seconds=Histogram(
            EXTERNAL_LATENCY_SECONDS, "Latency of calls to external systems", ["target", "operation"],
            buckets=LATENCY_BUCKETS, registry=r,
        ),
        rate_limit_usage=Gauge(RATE_LIMIT_USAGE, "Share of the target's rate limit in use (0..1)", ["target"], registry=r),
        rate_limited=Counter(RATE_LIMITED, "429 answers from a target", ["target"], registry=r),
        db_pools=_registered(DbPoolCollector(), r),
        freshness_seconds=Histogram(
            FRESHNESS_SECONDS, "Source change time to target applied, per delivered change event",
            ["target", "entity_type", "priority"], buckets=FRESHNESS_BUCKETS, registry=r,
        ),
        backlogs=_registered(BacklogCollector(), r),
    )  # fmt: skip


C = TypeVar("C", bound=Collector)


def _registered(collector: C, registry: CollectorRegistry) -> C:
    registry.register(collector)
    return collector


class ConsumerLagCollector(Collector):
    """Queue length: lag per group/topic/partition, and DLQ depth per DLQ topic, queried from
    Kafka when Prometheus scrapes and cached for `cache_s` so frequent scrapes stay cheap.

    `query_lag` / `query_dlq_depth` do the I/O (see `kafka_lag_source`); a failed query keeps
    the last good values rather than failing the whole scrape."""

    def __init__(
        self,
        query_lag: Callable[[], Iterable[LagRow]],
        query_dlq_depth: Callable[[], dict[str, int]] = dict,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._query_lag, self._query_dlq, self._cache_s, self._clock = query_lag, query_dlq_depth, cache_s, clock
        self._lag: list[LagRow] = []
        self._dlq: dict[str, int] = {}
        self._at: float | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            if self._at is not None and self._clock() - self._at < self._cache_s:
                return
            try:
                self._lag = list(self._query_lag())
                self._dlq = dict(self._query_dlq())
            finally:
                self._at = self._clock()

    def lag(self) -> list[LagRow]:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a broker hiccup must not break /metrics
            pass
        return list(self._lag)

    def total_lag(self, group: str) -> int:
        return sum(lag for g, _, _, lag in self.lag() if g == group)

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(CONSUMER_LAG, "Records a consumer group has yet to read", labels=["group", "topic", "partition"])
        for group, topic, partition, value in self.lag():
            lag.add_metric([group, topic, str(partition)], float(value))
        yield lag
        depth = GaugeMetricFamily(DLQ_DEPTH, "Records stored in a DLQ topic", labels=["topic"])
        for topic, value in self._dlq.items():
            depth.add_metric([topic], float(value))
        yield depth


def kafka_lag_source(
    settings: Settings, groups: dict[str, list[str]], dlq_topics: list[str]
) -> tuple[Callable[[], list[LagRow]], Callable[[], dict[str, int]]]:
    """The two Kafka queries for ConsumerLagCollector: {group: topics} lag, DLQ depth."""
    from syncflow.streams import admin as kafka_admin

    admin = kafka_admin.admin_client(settings)

    def query_lag() -> list[LagRow]:
        rows: list[LagRow] = []
        for group, topics in groups.items():
            for (topic, partition), value in sorted(kafka_admin.group_lag(admin, group, topics).items()):
                rows.append((group, topic, partition, value))
        return rows

    def query_dlq_depth() -> dict[str, int]:
        present = kafka_admin.existing_topics(admin)
        tps = kafka_admin.topic_partitions(admin, [t for t in dlq_topics if t in present])
        depth: dict[str, int] = {}
        for (topic, _), (low, high) in kafka_admin.watermarks(admin, tps).items():
            depth[topic] = depth.get(topic, 0) + high - low
        return depth

    return query_lag, query_dlq_depth


def register_lag_collector(
    registry: CollectorRegistry, settings: Settings, groups: dict[str, list[str]], dlq_topics: list[str] | None = None
) -> ConsumerLagCollector:
    """One call for a worker: lag of its group(s) ({group: topics}) and DLQ depth on `registry`.
    Keep the collector: `collector.total_lag(group)` feeds the readiness checks."""
    query_lag, query_dlq = kafka_lag_source(settings, groups, dlq_topics or [])
    collector = ConsumerLagCollector(query_lag, query_dlq, cache_s=settings.ops.lag_cache_s)
    registry.register(collector)
    return collector


def add_ops_routes(app: web.Application, health: HealthCheck, registry: CollectorRegistry) -> None:
    """Mount `/metrics`, `/health` and `/ready` on a worker's aiohttp application."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def liveness(_: web.Request) -> web.Response:
        report = await health.liveness()
        return web.json_response(report.to_dict(), status=200 if report.ok else 503)

    async def readiness(_: web.Request) -> web.Response:
        report = await health.readiness()
        return web.json_response(report.to_dict(), status=200 if report.ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", liveness)
    app.router.add_get("/ready", readiness)
