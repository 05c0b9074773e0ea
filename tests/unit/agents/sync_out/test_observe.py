"""Metrics from batch results, and the target reachability check."""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client import CollectorRegistry

from syncflow.agents.sync_out.batch import SyncOutBatchResult, Outcome
from syncflow.model import ChangeEvent
from syncflow.agents.sync_out.observe import SyncOutObserver
from syncflow.emulators.targets import emulator_url, start_target_emulator
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import FRESHNESS_BUCKETS, create_metrics
from syncflow.settings import OpsSettings


def test_outcomes_become_metrics_and_progress() -> None:
    registry = CollectorRegistry()
    health = HealthCheck(OpsSettings())
    observer = SyncOutObserver("one", "sync-out.one", "sync-out.one.dlq", 600, create_metrics(registry), health)
    result = SyncOutBatchResult(call_seconds=0.02, outcomes=[
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


def change_event(snapshot: dict[str, object], occurred_at_ms: int = 1_700_000_900_000) -> ChangeEvent:
    return ChangeEvent.from_record({
        "event_id": "loc-1:1", "entity_type": "location", "entity_id": "loc-1", "version": 1, "change_type": "create",
        "origin_source": "yardi", "origin_source_id": "1", "priority": 2, "snapshot": json.dumps(snapshot),
        "occurred_at": occurred_at_ms,
    })


def test_change_time_is_the_sources_modified_time_else_the_commit_time() -> None:
    # json_safe writes datetimes as ISO-8601 UTC with a Z; epoch milliseconds are read too
    assert change_event({"source_updated_at": "2023-11-14T22:13:20Z"}).changed_at_ms == 1_700_000_000_000
    assert change_event({"source_updated_at": "2023-11-14T22:13:20.250+00:00"}).changed_at_ms == 1_700_000_000_250
    assert change_event({"source_updated_at": 1_700_000_000_000}).changed_at_ms == 1_700_000_000_000
    # a record without its own time (a push that carried none): the version's commit time
    assert change_event({"source_updated_at": None}).changed_at_ms == 1_700_000_900_000
    assert change_event({"source_updated_at": "yesterday"}).changed_at_ms == 1_700_000_900_000
    assert change_event({}).changed_at_ms == 1_700_000_900_000


def test_freshness_is_observed_per_priority_for_deliveries_only() -> None:
    registry = CollectorRegistry()
    now = 1_700_000_000.0
    observer = SyncOutObserver("one", "sync-out.one", "sync-out.one.dlq", 600, create_metrics(registry), clock=lambda: now)
    changed = int(now * 1000)
    result = SyncOutBatchResult(outcomes=[
        Outcome("location", "changes.location", "delivered", priority=1, changed_at_ms=changed - 4_000),
        Outcome("location", "changes.location", "delivered", priority=1, changed_at_ms=changed - 90_000),
        Outcome("location", "changes.location", "delivered", priority=5, changed_at_ms=changed - 5 * 3600_000),
        Outcome("location", "changes.location", "delivered", priority=5, changed_at_ms=changed + 30_000),  # source clock ahead
        Outcome("location", "changes.location", "stale", priority=1, changed_at_ms=changed - 1_000),
        Outcome("location", "changes.location", "echo", priority=1, changed_at_ms=changed - 1_000),
        Outcome("location", "changes.location", "retry", "transient", 1, priority=1, changed_at_ms=changed - 1_000),
        Outcome("location", "changes.location", "rate-limited", "rate-limited", priority=1, changed_at_ms=changed - 1_000),
    ])
    observer.batch(result, 0.05)

    def sample(suffix: str, priority: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"syncflow_freshness_seconds{suffix}",
                                         {"target": "one", "entity_type": "location", "priority": priority, **labels})

    assert sample("_count", "1") == 2 and sample("_sum", "1") == pytest.approx(94.0)
    assert sample("_bucket", "1", le="5.0") == 1 and sample("_bucket", "1", le="60.0") == 1
    assert sample("_bucket", "1", le="120.0") == 2
    assert sample("_count", "5") == 2 and sample("_sum", "5") == pytest.approx(5 * 3600.0)
    assert sample("_bucket", "5", le="1.0") == 1  # the one from the future counts as 0 s
    assert sample("_bucket", "5", le="14400.0") == 1 and sample("_bucket", "5", le="43200.0") == 2
    assert sample("_count", "2") is None
    assert FRESHNESS_BUCKETS[0] <= 1.0 and FRESHNESS_BUCKETS[-1] >= 86400.0  # seconds to a day
