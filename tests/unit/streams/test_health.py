"""HealthCheck without services: caching, timeouts, failing checks, liveness heartbeats, the
stall rule, the error-rate window and the target's TCP check."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import CollectorRegistry

from syncflow.streams.health import (
    ErrorRate,
    HealthCheck,
    error_rate_below,
    error_rate_ok,
    is_progressing,
    lag_below,
    making_progress,
    partitions_assigned,
    target_reachable,
)
from syncflow.streams.metrics import create_metrics
from syncflow.settings import OpsSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_readiness_is_cached_for_health_cache_s() -> None:
    clock = FakeClock()
    health = HealthCheck(OpsSettings(health_cache_s=2), clock=clock)
    calls: list[int] = []

    async def counting() -> tuple[bool, str]:
        calls.append(1)
        return True, "fine"

    health.add("counting", counting)
    await health.readiness()
    await health.readiness()
    assert len(calls) == 1
    clock.now += 3
    await health.readiness()
    assert len(calls) == 2


async def test_a_slow_or_raising_check_makes_it_not_ready() -> None:
    health = HealthCheck(OpsSettings(health_cache_s=0, check_timeout_s=0.05))

    async def slow() -> tuple[bool, str]:
        await asyncio.sleep(1)
        return True, "late"

    async def raising() -> tuple[bool, str]:
        raise ConnectionError("refused")

    async def fine() -> tuple[bool, str]:
        return True, "fine"

    health.add("slow", slow)
    health.add("raising", raising)
    health.add("fine", fine)
    report = await health.readiness()
    by_name = {c.name: c for c in report.checks}
    assert not report.ok
    assert not by_name["slow"].ok and "no answer" in by_name["slow"].detail
    assert not by_name["raising"].ok and "ConnectionError: refused" in by_name["raising"].detail
    assert by_name["fine"].ok


async def test_liveness_follows_the_heartbeat() -> None:
    clock = FakeClock()
    health = HealthCheck(OpsSettings(liveness_timeout_s=10), clock=clock)
    assert (await health.liveness()).ok  # no loop registered yet
    health.heartbeat()
    clock.now += 5
    assert (await health.liveness()).ok
    clock.now += 6
    assert not (await health.liveness()).ok


def test_progress_rule() -> None:
    assert is_progressing(lag=0, seconds_since_progress=10_000, stall_after_s=60)
    assert is_progressing(lag=5, seconds_since_progress=30, stall_after_s=60)
    assert not is_progressing(lag=5, seconds_since_progress=61, stall_after_s=60)


async def test_stalled_worker_with_lag_is_not_ready_until_it_progresses() -> None:
    clock = FakeClock()
    health = HealthCheck(OpsSettings(health_cache_s=0), clock=clock)
    health.add("progress", making_progress(health, lambda: 12, stall_after_s=60))
    assert (await health.readiness()).ok
    clock.now += 61
    report = await health.readiness()
    assert not report.ok and "lag 12" in report.checks[0].detail
    health.progress()
    assert (await health.readiness()).ok


async def test_partitions_and_lag_thresholds() -> None:
    assert (await partitions_assigned(lambda: 2)())[0]
    assert not (await partitions_assigned(lambda: 0)())[0]
    assert (await lag_below(lambda: 10, 10)())[0]
    assert not (await lag_below(lambda: 11, 10)())[0]


def test_error_rate_rule() -> None:
    assert error_rate_ok(requests=5, failures=5, max_rate=0.5, min_requests=20)
    assert error_rate_ok(requests=100, failures=50, max_rate=0.5, min_requests=20)
    assert not error_rate_ok(requests=100, failures=51, max_rate=0.5, min_requests=20)


async def test_error_rate_window_reads_the_counters() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    rate = ErrorRate(registry, "syncflow_sync_in_requests", "syncflow_sync_in_failures", window_s=60, clock=clock)
    check = error_rate_below(rate, max_rate=0.5, min_requests=10)
    assert (await check())[0]
    metrics.sync_in_requests.labels("yardi", "location").inc(20)
    metrics.sync_in_failures.labels("yardi", "location", "validation").inc(15)
    ok, detail = await check()
    assert not ok and "15 failures / 20 requests" in detail
    clock.now += 61
    await check()  # a sample after the window: the old burst drops out
    clock.now += 61
    metrics.sync_in_requests.labels("yardi", "location").inc(20)
    assert (await check())[0]


async def test_target_reachable_connects_without_a_request() -> None:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.read(100))  # b"": the check closes without sending
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ok, detail = await target_reachable(f"http://127.0.0.1:{port}/api", 1.0)()
        assert ok and detail == f"127.0.0.1:{port} accepts connections"
        await asyncio.sleep(0.1)
        assert requests == [b""]
    finally:
        server.close()
        await server.wait_closed()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(OSError):  # HealthCheck turns the exception into "not ready"
        await target_reachable(f"http://127.0.0.1:{free}", 1.0)()
