"""Liveness and readiness for every worker.

`/health` answers "is the process loop alive" (a restart helps when it is not); `/ready`
answers "can this worker do its job now" (Kafka, its partitions, its databases, its target,
progress, lag and error rate). A HealthCheck holds named async checks; each returns
(ok, detail). Results are cached for a second or two, so probes stay cheap.

The stall check covers a known faust failure: a worker that holds partitions, has lag and
makes no progress, while its web server still answers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from sqlalchemy import Engine, text

from syncflow.settings import OpsSettings, Settings

CheckFn = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    latency_ms: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "latency_ms": round(self.latency_ms, 1)}


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    checks: list[CheckResult]

    def to_dict(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "unavailable", "checks": [c.to_dict() for c in self.checks]}


class HealthCheck:
    """Named readiness checks plus the worker's heartbeat and progress timestamps."""

    def __init__(self, ops: OpsSettings, clock: Callable[[], float] = time.monotonic):
        self._ops, self._clock = ops, clock
        self._checks: dict[str, CheckFn] = {}
        self._started = clock()
        self._heartbeat: float | None = None
        self._progress: float | None = None
        self._cached: tuple[float, HealthReport] | None = None
        self._lock: asyncio.Lock | None = None

    def add(self, name: str, check: CheckFn) -> None:
        self._checks[name] = check

    def names(self) -> list[str]:
        """The readiness checks registered, in order (docs/operations.md lists them per role)."""
        return list(self._checks)

    def heartbeat(self) -> None:
        """Called by the worker's processing loop on every turn (liveness)."""
        self._heartbeat = self._clock()

    def progress(self) -> None:
        """Called when the worker finished (committed) records (stall detection)."""
        self._progress = self._clock()
        self._heartbeat = self._progress

    def seconds_since_progress(self) -> float:
        return self._clock() - (self._progress if self._progress is not None else self._started)

    async def liveness(self) -> HealthReport:
        if self._heartbeat is None:
            result = CheckResult("loop", True, "event loop answers; no processing loop registered", 0.0)
        else:
            age = self._clock() - self._heartbeat
            ok = age <= self._ops.liveness_timeout_s
            result = CheckResult("loop", ok, f"last heartbeat {age:.1f}s ago", 0.0)
        return HealthReport(result.ok, [result])

    async def readiness(self) -> HealthReport:
        """Every check, run concurrently with a timeout each; cached for health_cache_s."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._ops.health_cache_s:
                return self._cached[1]
            results = await asyncio.gather(*(self._run(name, fn) for name, fn in self._checks.items()))
            report = HealthReport(all(r.ok for r in results), list(results))
            self._cached = (self._clock(), report)
            return report

    async def _run(self, name: str, check: CheckFn) -> CheckResult:
        start = time.perf_counter()
        try:
            ok, detail = await asyncio.wait_for(check(), timeout=self._ops.check_timeout_s)
        except asyncio.TimeoutError:
            ok, detail = False, f"no answer within {self._ops.check_timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency means not ready
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:500]
        return CheckResult(name, ok, detail, (time.perf_counter() - start) * 1000)


# -- check factories: each returns an async check; I/O runs in a thread ------------------
def kafka_reachable(settings: Settings) -> CheckFn:
    """A metadata request to the brokers."""
    from confluent_kafka.admin import AdminClient

    from syncflow.streams.security import kafka_client_config

    admin = AdminClient(kafka_client_config(settings))
    timeout = settings.ops.check_timeout_s

    async def check() -> tuple[bool, str]:
        metadata = await asyncio.to_thread(admin.list_topics, timeout=timeout)
        return True, f"{len(metadata.brokers)} broker(s)"

    return check


def partitions_assigned(assigned: Callable[[], int]) -> CheckFn:
    """The worker holds at least one partition (the callable returns how many)."""

    async def check() -> tuple[bool, str]:
        count = assigned()
        return count > 0, f"{count} partition(s) assigned"

    return check


def making_progress(health: HealthCheck, lag: Callable[[], int], stall_after_s: float) -> CheckFn:
    """Not ready when there is lag and no progress for `stall_after_s` seconds."""

    async def check() -> tuple[bool, str]:
        pending = await asyncio.to_thread(lag)
        idle = health.seconds_since_progress()
        return is_progressing(pending, idle, stall_after_s), f"lag {pending}, last progress {idle:.0f}s ago"

    return check


def is_progressing(lag: int, seconds_since_progress: float, stall_after_s: float) -> bool:
    return lag <= 0 or seconds_since_progress <= stall_after_s


def postgres_reachable(engine: Engine) -> CheckFn:
    """`SELECT 1` on the worker's engine (give it a connect_timeout)."""

    def select_one() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def check() -> tuple[bool, str]:
        await asyncio.to_thread(select_one)
        return True, "SELECT 1"

    return check


def mongo_reachable(client: MongoClient) -> CheckFn:
    async def check() -> tuple[bool, str]:
        await asyncio.to_thread(client.admin.command, "ping")
        return True, "ping"

    return check


def target_reachable(base_url: str, timeout_s: float) -> CheckFn:
    """The target's host accepts a TCP connection: no request, so no rate-limit cost."""
    url = urlparse(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)

    async def check() -> tuple[bool, str]:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        writer.close()
        return True, f"{host}:{port} accepts connections"

    return check


def lag_below(lag: Callable[[], int], max_lag: int) -> CheckFn:
    async def check() -> tuple[bool, str]:
        pending = await asyncio.to_thread(lag)
        return pending <= max_lag, f"lag {pending} (limit {max_lag})"

    return check


class ErrorRate:
    """Failures / requests over a sliding window, from two counters of a registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        requests: str,
        failures: str,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._registry, self._names, self._window_s, self._clock = registry, (requests, failures), window_s, clock
        self._samples: deque[tuple[float, float, float]] = deque()

    def sample(self) -> tuple[float, float]:
        """(requests, failures) seen within the window, recording the current totals."""
        now = self._clock()
        totals = (counter_total(self._registry, self._names[0]), counter_total(self._registry, self._names[1]))
        self._samples.append((now, *totals))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self._window_s:
            self._samples.popleft()
        _, req0, fail0 = self._samples[0]
        return totals[0] - req0, totals[1] - fail0


def counter_total(registry: CollectorRegistry, name: str) -> float:
    """Sum of a counter over all its label sets (0 when it has none yet)."""
    total = 0.0
    for metric in registry.restricted_registry([name + "_total"]).collect():
        total += sum(s.value for s in metric.samples if s.name == name + "_total")
    return total


def error_rate_below(rate: ErrorRate, max_rate: float, min_requests: int) -> CheckFn:
    async def check() -> tuple[bool, str]:
        requests, failures = rate.sample()
        ok = error_rate_ok(requests, failures, max_rate, min_requests)
        ratio = failures / requests if requests else 0.0
        return ok, f"{failures:.0f} failures / {requests:.0f} requests ({ratio:.0%}, limit {max_rate:.0%})"

    return check


def error_rate_ok(requests: float, failures: float, max_rate: float, min_requests: int) -> bool:
    """Too few requests say nothing; otherwise the failure share must stay at or under the limit."""
    return requests < min_requests or failures / requests <= max_rate


def add_consumer_checks(health: HealthCheck, ops: OpsSettings, lag: Callable[[], int], rate: ErrorRate) -> None:
    """The readiness checks every consuming role shares: progress (no stall while there is
    lag), lag under `ops.max_lag`, and the failure share under `ops.max_error_rate`."""
    health.add("progress", making_progress(health, lag, ops.stall_after_s))
    health.add("lag", lag_below(lag, ops.max_lag))
    health.add("error-rate", error_rate_below(rate, ops.max_error_rate, ops.error_rate_min_requests))
