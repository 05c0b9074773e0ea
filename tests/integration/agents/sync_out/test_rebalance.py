"""A rebalance (a worker joining and leaving, or the broker coming back after a restart)
while a retry-tier partition is held: the partition is fetched again afterwards and every
record is delivered. librdkafka keeps a partition paused across revoke and re-assignment, so
a worker that forgot its pauses at the revoke would never read that partition again."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import Consumer

from syncflow.agents.sync_out import sync_out_topics
from syncflow.agents.sync_out.worker import consumer_config
from syncflow.emulators.targets import emulator_state

from .conftest import fast_settings, location, pointing_at, wait_for


def join_and_leave(settings, group: str, topics: list[str], stay_s: float) -> list[tuple[str, int]]:
    """A second member takes part of the assignment for a while, then leaves; returns what it got."""
    consumer = Consumer(consumer_config(settings, group))
    got: list[tuple[str, int]] = []
    consumer.subscribe(topics, on_assign=lambda _c, ps: got.extend((p.topic, p.partition) for p in ps))
    deadline = time.monotonic() + stay_s
    try:
        while time.monotonic() < deadline:
            consumer.consume(100, 0.2)  # reads, never commits: the records return to the worker
    finally:
        consumer.close()
    return got


async def test_held_retry_partitions_flow_again_after_a_rebalance(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, retry_delays_s=[8.0, 8.0, 8.0]),
                    "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"fail_next": 10})
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(10)])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["retried"] == 10 and w.worker.gate.held(), what="retries held in tier 1")
    topics = sync_out_topics(s, "one")
    other = await asyncio.to_thread(join_and_leave, s, topics.group, topics.changes + topics.retries, 6.0)
    assert other, "the second member never got a partition: no rebalance happened"
    await wait_for(lambda: len(state.received) == 10, timeout=40, what="the 10 retried records delivered")
    await w.stop()
    assert sorted(a.external_id for a in state.received) == sorted(f"loc-{i}" for i in range(10))
    assert w.worker.stats["delivered"] == 10
