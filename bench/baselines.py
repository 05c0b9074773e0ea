"""Baselines measured in the same run as a benchmark, so each pipeline figure can be shown
as a ratio of what the bare machinery does on the same machine at the same moment:

- bare HTTP: the same target requests sent straight to a target emulator with aiohttp at the
  same concurrency (no Kafka, no database, no rate limiter, no client retries);
- bare consume: a plain confluent-kafka consumer reading the same topics, decoding nothing."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True)
class Call:
    """One record's worth of target work, in the target's own terms."""

    resource: str
    external_id: str
    op: str  # upsert | delete
    idempotency_key: str
    payload: dict[str, Any] | None


@dataclass
class HttpRun:
    records: int
    requests: int
    seconds: float
    errors: int
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second (a Lessen360 batch carries many records in one request)."""
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def auth_headers(target: str, api_key: str) -> dict[str, str]:
    """The targets' own auth schemes (what the emulators check)."""
    return {"X-Api-Key": api_key} if target == "lessen360" else {"Authorization": f"Bearer {api_key}"}


async def bare_http(target: str, base_url: str, api_key: str, calls: list[Call], concurrency: int,
                    batch_max: int = 100, timeout_s: float = 30.0) -> HttpRun:
    """Send `calls` as the target expects them (ONE: one PUT/DELETE per record; Lessen360:
    POST /v1/batch of up to `batch_max`), at most `concurrency` requests in flight."""
    if target == "lessen360":
        requests = [("POST", "/v1/batch", {"operations": [_lessen_op(c) for c in calls[i:i + batch_max]]}, None)
                    for i in range(0, len(calls), max(1, batch_max))]
        sizes = [len(r[2]["operations"]) for r in requests]  # type: ignore[index]
    else:
        requests = [("DELETE" if c.op == "delete" else "PUT", f"/api/v2/{c.resource}/{c.external_id}",
                     None if c.op == "delete" else c.payload, c.idempotency_key) for c in calls]
        sizes = [1] * len(requests)
    slots = asyncio.Semaphore(max(1, concurrency))
    latencies: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, method: str, path: str, body: Any, key: str | None) -> None:
        nonlocal errors
        async with slots:
            started = time.perf_counter()
            try:
                async with session.request(method, path, json=body,
                                           headers={"Idempotency-Key": key} if key else None) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=max(1, concurrency) * 2)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, headers=auth_headers(target, api_key),
                                     timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session, *r) for r in requests))
        seconds = time.perf_counter() - started
    return HttpRun(sum(sizes), len(requests), seconds, errors, latencies)


def _lessen_op(c: Call) -> dict[str, Any]:
    op: dict[str, Any] = {"op": c.op, "resource": c.resource, "external_id": c.external_id,
                          "idempotency_key": c.idempotency_key}
    if c.op != "delete":
        op["data"] = c.payload
    return op


@dataclass
class ConsumeRun:
    records: int
    seconds: float
    first_timestamp_ms: int | None = None  # the oldest record's Kafka timestamp (when it was produced)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def bare_consume(client: Mapping[str, Any] | str, topics: list[str], timeout_s: float = 300.0) -> ConsumeRun:
    """Read every record now on `topics` from the beginning with a plain consumer (no group
    commits, no decoding); the clock runs from the assignment to the last record. `client` is
    the base client config (syncflow.streams.security.kafka_client_config) or bootstrap servers."""
    base = {"bootstrap.servers": client} if isinstance(client, str) else dict(client)
    c = Consumer({**base, "group.id": f"bench-bare-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    try:
        meta = c.list_topics(timeout=30)
        parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in meta.topics[t].partitions]
        remaining: dict[tuple[str, int], int] = {}
        expected = 0
        for tp in parts:
            low, high = c.get_watermark_offsets(tp, timeout=30)
            if high > low:
                remaining[(tp.topic, tp.partition)] = high
                expected += high - low
        started = time.perf_counter()
        c.assign(parts)
        count, last, first_ts = 0, None, None
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            # consume() waits out its timeout unless it gets all it asked for: ask for what is left.
            for m in c.consume(max(1, min(10000, expected - count)), 1.0):
                if m.error() is not None:
                    continue
                last = time.perf_counter()
                ts_type, ts = m.timestamp()
                if ts_type and ts > 0 and (first_ts is None or ts < first_ts):
                    first_ts = ts
                count += 1
                key = (m.topic(), m.partition())
                if key in remaining and m.offset() >= remaining[key] - 1:
                    del remaining[key]
        seconds = last - started if last is not None else float("nan")
        return ConsumeRun(count, seconds, first_ts)
    finally:
        c.close()
