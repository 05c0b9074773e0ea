"""What a sync-out worker tells Prometheus and the health checks, from each batch's result.
Kept apart from the processing so BatchProcessor only reports outcomes; both parts are
optional (tests and the benchmark run without them)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from syncflow.agents.sync_out.batch import SyncOutBatchResult
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import RateWindow, SyncflowMetrics

log = logging.getLogger(__name__)

SUCCESS_KINDS = frozenset({"delivered", "stale", "echo", "not-taken"})


class SyncOutObserver:
    def __init__(
        self,
        target: str,
        group: str,
        dlq_topic: str,
        rate_per_minute: float,
        metrics: SyncflowMetrics | None = None,
        health: HealthCheck | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.target, self.group, self.dlq_topic = target, group, dlq_topic
        self.rate_per_s = rate_per_minute / 60.0
        self.metrics, self.health = metrics, health
        self.clock = clock
        self._delivered = RateWindow()

    def turn(self) -> None:
        """One turn of the worker loop (liveness)."""
        if self.health is not None:
            self.health.heartbeat()

    def batch(self, result: SyncOutBatchResult, seconds: float) -> None:
        """A batch finished after `seconds`: one INFO line with its counts, metrics, progress."""
        if self.health is not None and result.done:
            self.health.progress()
        self.log_batch(result, seconds)
        m = self.metrics
        if m is None:
            return
        t, applied_s = self.target, self.clock()  # the batch's deliveries are confirmed and recorded now
        done_per_topic: Counter[str] = Counter()
        delivered = 0
        for o in result.outcomes:
            if o.kind == "held-back":  # not sent (a 429 to another call): no attempt
                continue
            if o.kind == "rate-limited":  # a failed attempt, though the record keeps its place
                m.rate_limited.labels(t).inc()
                m.sync_out_failures.labels(t, o.entity_type, "rate-limited").inc()
                continue
            m.sync_out_requests.labels(t, o.entity_type).inc()
            m.sync_out_processing_seconds.labels(t, o.entity_type).observe(seconds)
            done_per_topic[o.topic] += 1
            if o.kind in SUCCESS_KINDS:
                m.sync_out_success.labels(t, o.entity_type, o.kind).inc()
                delivered += o.kind == "delivered"
                if o.kind == "delivered" and o.changed_at_ms:
                    m.freshness_seconds.labels(t, o.entity_type, str(o.priority)).observe(
                        freshness_s(o.changed_at_ms, applied_s))
            else:
                m.sync_out_failures.labels(t, o.entity_type, o.category or "internal").inc()
                if o.kind == "retry":
                    m.retries.labels(t, str(o.tier) if o.tier else "dependency").inc()
                else:
                    m.dlq_records.labels(self.dlq_topic, o.category or "internal").inc()
        for topic, n in done_per_topic.items():
            m.record_processed(self.group, topic, n)
        if result.call_seconds:
            m.external_latency_seconds.labels(t, "deliver").observe(result.call_seconds)
        if self.rate_per_s > 0:
            m.rate_limit_usage.labels(t).set(min(1.0, self._delivered.mark(delivered) / self.rate_per_s))


    def log_batch(self, result: SyncOutBatchResult, seconds: float) -> None:
        c = result.counts
        counts = {"delivered": c["delivered"], "skipped": c["stale"] + c["echo"] + c["not-taken"],
                  "retried": c["retried"], "dead_lettered": c["dead-lettered"],
                  "put_back": len(result.put_back)}
        if not result.done and not counts["put_back"]:
            return
        log.info("sync-out %s batch: %d delivered, %d skipped, %d retried, %d dead-lettered, %d put back (%.0f ms)",
                 self.target, *counts.values(), seconds * 1000, extra={"target": self.target, **counts})


def freshness_s(changed_at_ms: int, applied_s: float) -> float:
    """Seconds from the source's change to the target's confirmation; a source clock ahead
    of ours counts as 0, not as a negative age."""
    return max(0.0, applied_s - changed_at_ms / 1000.0)
