"""Metrics from batch results, and the target reachability check."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry

from syncflow.agents.sync_out.batch import BatchResult, Outcome
from syncflow.agents.sync_out.observe import SyncOutObserver, target_reachable
from syncflow.emulators.targets import emulator_url, start_target_emulator
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import create_metrics
from syncflow.streams.settings import OpsSettings


def test_outcomes_become_metrics_and_progress() -> None:
    registry = CollectorRegistry()
    health = HealthCheck(OpsSettings())
    observer = SyncOutObserver("one", "sync-out.one", "sync-out.one.dlq", 600, create_metrics(registry), health)
    result = BatchResult(call_seconds=0.02, outcomes=[
        Outcome("location", "changes.location", "delivered"),
        Outcome("location", "changes.location", "delivered"),
        Outcome("location", "changes.location", "stale"),
        Outcome("service_request", "sync-out.one.retry.1", "retry", "dependency", 2),
        Outcome("service_request", "changes.service_request", "dlq", "permanent"),
        Outcome("location", "changes.location", "rate-limited", "rate-limited"),
    ])
    result.done.append(object())  # type: ignore[arg-type]
    observer.batch(result, 0.05)

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert sample("syncflow_sync_out_success_total", target="one", entity_type="location", outcome="delivered") == 2
    assert sample("syncflow_sync_out_success_total", target="one", entity_type="location", outcome="stale") == 1
    assert sample("syncflow_retries_total", target="one", tier="2") == 1
    assert sample("syncflow_sync_out_failures_total", target="one", entity_type="service_request", category="dependency") == 1
    assert sample("syncflow_dlq_records_total", topic="sync-out.one.dlq", category="permanent") == 1
    assert sample("syncflow_rate_limited_total", target="one") == 1
    assert sample("syncflow_sync_out_requests_total", target="one", entity_type="location") == 3
    assert sample("syncflow_records_processed_total", group="sync-out.one", topic="changes.location") == 3
    assert sample("syncflow_external_latency_seconds_count", target="one", operation="deliver") == 1
    assert 0 < sample("syncflow_rate_limit_usage_ratio", target="one") <= 1
    assert health.seconds_since_progress() < 5


async def test_target_reachable_check() -> None:
    runner = await start_target_emulator("one")
    try:
        ok, detail = await target_reachable(emulator_url(runner), 1.0)()
        assert ok and "accepts" in detail
    finally:
        await runner.cleanup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):  # HealthCheck turns the exception into "not ready"
        await target_reachable(f"http://127.0.0.1:{port}", 1.0)()
