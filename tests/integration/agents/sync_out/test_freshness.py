"""Freshness on a real sync-out worker: after it delivered changes to the target emulator,
its /metrics shows how old each change was when the target confirmed it, by priority."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from syncflow.roles.sync_out import add_observability
from syncflow.emulators.targets import emulator_state
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import create_metrics

from .conftest import location, pointing_at, wait_for


def iso(seconds_ago: float) -> str:
    """A snapshot time as sync-in writes it (ISO-8601 UTC with a Z)."""
    return datetime.fromtimestamp(time.time() - seconds_ago, tz=UTC).isoformat().replace("+00:00", "Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_delivered_changes_show_their_age_by_priority_on_metrics(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    registry = CollectorRegistry()
    metrics, health = create_metrics(registry), HealthCheck(s.ops)
    events.send([
        events.record("location", "loc-f1", 1, location("f1", source_updated_at=iso(90)), priority=1),
        events.record("location", "loc-f2", 1, location("f2", source_updated_at=iso(100)), priority=1),
        events.record("location", "loc-f3", 1, location("f3", source_updated_at=iso(2 * 3600 + 60)), priority=7),
        # no time of its own (a pushed record without one): the version's commit time, just now
        events.record("location", "loc-f4", 1, location("f4"), priority=5),
    ])
    w = await start_worker(s, "one", metrics=metrics, health=health)
    add_observability(s, w.worker, registry, health)
    runner = web.AppRunner(w.worker.web_app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await wait_for(lambda: len(state.received) == 4, what="4 delivered")
        # the target answered; the worker observes once it recorded the batch
        await wait_for(lambda: w.worker.stats["delivered"] == 4, what="4 deliveries recorded")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    finally:
        await runner.cleanup()
        await w.stop()

    [family] = [f for f in text_string_to_metric_families(text) if f.name == "syncflow_freshness_seconds"]
    samples = {(x.name, x.labels["priority"], x.labels.get("le")): x.value for x in family.samples
               if x.labels["target"] == "one" and x.labels["entity_type"] == "location"}
    count = {p: samples.get(("syncflow_freshness_seconds_count", p, None)) for p in ("1", "5", "7")}
    assert count == {"1": 2, "5": 1, "7": 1}
    bucket = lambda p, le: samples[("syncflow_freshness_seconds_bucket", p, le)]  # noqa: E731
    assert bucket("1", "60.0") == 0 and bucket("1", "300.0") == 2  # 90 s and 100 s old (plus the delivery)
    assert bucket("7", "7200.0") == 0 and bucket("7", "14400.0") == 1  # two hours and a minute
    assert bucket("5", "60.0") == 1  # from its commit time
    assert 190 <= samples[("syncflow_freshness_seconds_sum", "1", None)] < 190 + 60
