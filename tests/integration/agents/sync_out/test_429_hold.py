"""A target that answers 429 for a long stretch holds its records: a 429 is backpressure, not
a failure. No record goes to a retry tier or the DLQ, none spends an attempt, nothing is
committed past them, and once the 429s stop every record is delivered once."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from syncflow.streams.topics import sync_out_topics
from syncflow.emulators.targets import emulator_state
from syncflow.settings import Settings

from .conftest import delivered_versions, location, pointing_at, wait_for
from .test_delivery import sync_rows


def topic_sizes(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Records ever written to each topic (sum of its partitions' high watermarks)."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "sizes", "enable.auto.commit": False})
    try:
        out = {}
        for topic in topics:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            out[topic] = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
        return out
    finally:
        c.close()


async def test_429_for_a_long_stretch_holds_records_then_delivers_them_once(so_settings, one_emulator, events, start_worker) -> None:
    n, retry_after_s, rounds = 20, 0.3, 5
    # retry tiers of 0.4 s and up: a 429 taken for a transient failure would reach the DLQ
    # within the stretch many times over
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"force_429_s": 3600, "retry_after_s": retry_after_s})  # 429 until told otherwise
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(n)])
    w = await start_worker(s, "one")
    topics = sync_out_topics(s, "one")

    def refused_rounds() -> bool:
        assert w.worker.stats["retried"] == 0 and w.worker.stats["dead-lettered"] == 0, dict(w.worker.stats)
        return state.counters.get("rate_limited", 0) >= rounds * n

    # the target refuses round after round; every record stays held by the worker
    await wait_for(refused_rounds, timeout=90, what=f"{rounds} rounds of 429s")
    assert state.received == []
    assert w.worker.offsets.pending_count() == n  # nothing finished, so nothing committed past them
    assert w.worker.stats["retried"] == 0 and w.worker.stats["dead-lettered"] == 0
    held = sync_rows(s, "one")
    assert all(r.status not in ("retry", "failed") and r.attempts == 0 and r.synced_version == 0 for r in held.values()), {
        k: (r.status, r.attempts) for k, r in held.items()}
    assert topic_sizes(s, topics.retries + [topics.dlq]) == dict.fromkeys(topics.retries + [topics.dlq], 0)

    state.set_faults({"force_429_s": 0})  # the target takes calls again
    await wait_for(lambda: len(state.received) == n and w.worker.offsets.pending_count() == 0,
                   timeout=60, what="every record delivered after the 429s")
    await w.stop()
    assert delivered_versions(state) == {f"loc-{i}": [1] for i in range(n)}  # once each
    assert state.counters.get("replays", 0) == 0
    assert w.worker.stats["retried"] == 0 and w.worker.stats["dead-lettered"] == 0
    assert w.worker.stats["rate-limited"] >= rounds * n and w.worker.stats["delivered"] == n
    assert topic_sizes(s, topics.retries + [topics.dlq]) == dict.fromkeys(topics.retries + [topics.dlq], 0)
    rows = sync_rows(s, "one")
    assert {k: (r.synced_version, r.status, r.attempts) for k, r in rows.items()} == {f"loc-{i}": (1, "synced", 0) for i in range(n)}
