"""The metric set: every declared name is registered, the lag collector caches and survives
a failing query, and the ops routes serve the three endpoints."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import (
    BACKLOG,
    BACKLOG_OLDEST_SECONDS,
    CONSUMER_LAG,
    DLQ_DEPTH,
    METRIC_NAMES,
    BacklogCollector,
    ConsumerLagCollector,
    RateWindow,
    add_ops_routes,
    create_metrics,
    exposed_name_to_metric,
)
from syncflow.settings import OpsSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def families(registry: CollectorRegistry) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_every_declared_name_is_exposed_and_nothing_else() -> None:
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    registry.register(ConsumerLagCollector(lambda: [("g", "t", 0, 3)], lambda: {"d": 1}))
    metrics.db_pools.watch("common", lambda: 4)
    exposed = set(families(registry))
    assert exposed == set(METRIC_NAMES)


def test_exposed_series_names_map_back_to_declared_names() -> None:
    assert exposed_name_to_metric("syncflow_sync_in_requests_total") == "syncflow_sync_in_requests"
    assert exposed_name_to_metric("syncflow_sync_out_processing_seconds_bucket") == "syncflow_sync_out_processing_seconds"
    assert exposed_name_to_metric("syncflow_consumer_lag") == "syncflow_consumer_lag"
    assert exposed_name_to_metric("something_total") == "something_total"


def test_counters_and_pool_gauge_carry_their_labels() -> None:
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    metrics.sync_out_failures.labels("one", "location", "transient").inc(2)
    in_use = [1]
    metrics.db_pools.watch("common", lambda: in_use[0])
    in_use[0] = 5
    assert registry.get_sample_value(
        "syncflow_sync_out_failures_total", {"target": "one", "entity_type": "location", "category": "transient"}
    ) == 2
    assert registry.get_sample_value("syncflow_db_connections_in_use", {"pool": "common"}) == 5


def test_rate_window_forgets_old_events() -> None:
    clock = FakeClock()
    window = RateWindow(window_s=10, clock=clock)
    window.mark(20)
    assert window.rate() == 2.0
    clock.now += 11
    assert window.rate() == 0.0


def test_lag_collector_caches_and_keeps_last_values_on_failure() -> None:
    clock = FakeClock()
    calls: list[int] = []
    answers: list[object] = [[("sync-in", "raw.yardi", 0, 7)], RuntimeError("broker down")]

    def query() -> list[tuple[str, str, int, int]]:
        calls.append(1)
        answer = answers[min(len(calls) - 1, 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    collector = ConsumerLagCollector(query, lambda: {"sync-in.dlq": 3}, cache_s=5, clock=clock)
    registry = CollectorRegistry()
    registry.register(collector)
    labels = {"group": "sync-in", "topic": "raw.yardi", "partition": "0"}
    assert registry.get_sample_value(CONSUMER_LAG, labels) == 7
    assert registry.get_sample_value(DLQ_DEPTH, {"topic": "sync-in.dlq"}) == 3
    registry.get_sample_value(CONSUMER_LAG, labels)
    assert len(calls) == 1  # cached
    clock.now += 6
    assert registry.get_sample_value(CONSUMER_LAG, labels) == 7  # query failed: last values kept
    assert len(calls) == 2
    assert collector.total_lag("sync-in") == 7


def test_backlog_collector_caches_and_keeps_last_values_on_failure() -> None:
    clock = FakeClock()
    answers: list[object] = [(12, 40.0), RuntimeError("database down"), (0, None)]

    def read() -> tuple[int, float | None]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    collector = BacklogCollector(cache_s=5, clock=clock)
    registry = CollectorRegistry()
    registry.register(collector)
    collector.watch("outbox", read)
    assert registry.get_sample_value(BACKLOG, {"queue": "outbox"}) == 12
    assert registry.get_sample_value(BACKLOG_OLDEST_SECONDS, {"queue": "outbox"}) == 40
    assert len(answers) == 2  # cached: one read for both gauges
    clock.now += 6
    assert registry.get_sample_value(BACKLOG, {"queue": "outbox"}) == 12  # read failed: last value kept
    clock.now += 6
    assert registry.get_sample_value(BACKLOG, {"queue": "outbox"}) == 0
    assert registry.get_sample_value(BACKLOG_OLDEST_SECONDS, {"queue": "outbox"}) == 0  # nothing waits


async def test_ops_routes_serve_metrics_health_and_ready() -> None:
    registry = CollectorRegistry()
    create_metrics(registry).sync_in_requests.labels("yardi", "location").inc()
    health = HealthCheck(OpsSettings(health_cache_s=0))
    healthy = [True]

    async def flappy() -> tuple[bool, str]:
        return healthy[0], "flappy"

    health.add("flappy", flappy)
    app = web.Application()
    add_ops_routes(app, health, registry)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert "text/plain" in response.headers["Content-Type"]
        assert 'syncflow_sync_in_requests_total{entity_type="location",source="yardi"} 1.0' in await response.text()
        assert (await client.get("/health")).status == 200
        ready = await client.get("/ready")
        assert ready.status == 200
        assert (await ready.json())["checks"][0]["name"] == "flappy"
        healthy[0] = False
        not_ready = await client.get("/ready")
        assert not_ready.status == 503
        body = await not_ready.json()
        assert body["status"] == "unavailable"
        assert set(body["checks"][0]) == {"name", "ok", "detail", "latency_ms"}
