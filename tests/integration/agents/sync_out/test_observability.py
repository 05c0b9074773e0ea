"""A sync-out worker's metrics and health follow what it did."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from syncflow.emulators.targets import emulator_state
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import create_metrics

from .conftest import location, pointing_at, wait_for


async def test_metrics_count_outcomes_and_health_sees_progress(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    registry = CollectorRegistry()
    metrics, health = create_metrics(registry), HealthCheck(s.ops)
    bad = {k: v for k, v in location("b").items() if k != "property_code"}
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(5)]
                + [events.record("location", "loc-b", 1, bad), events.record("location", "loc-e", 1, location("e"), origin="one")])
    w = await start_worker(s, "one", metrics=metrics, health=health)
    await wait_for(lambda: len(state.received) == 5 and w.worker.stats["dead-lettered"] == 1 and w.worker.stats["echo"] == 1,
                   what="5 delivered, 1 DLQ, 1 echo")
    await w.stop()

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert sample("syncflow_sync_out_success_total", target="one", entity_type="location", outcome="delivered") == 5
    assert sample("syncflow_sync_out_success_total", target="one", entity_type="location", outcome="echo") == 1
    assert sample("syncflow_sync_out_failures_total", target="one", entity_type="location", category="permanent") == 1
    assert sample("syncflow_dlq_records_total", topic=w.worker.topics.dlq, category="permanent") == 1
    assert sample("syncflow_sync_out_requests_total", target="one", entity_type="location") == 7
    assert sample("syncflow_external_latency_seconds_count", target="one", operation="deliver") >= 1
    assert sample("syncflow_sync_out_processing_seconds_count", target="one", entity_type="location") == 7
    assert health.seconds_since_progress() < 30
