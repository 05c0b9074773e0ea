"""A rebalance (a worker joining and leaving, or the broker coming back after a restart)
while a retry-tier partition is held: the partition is fetched again afterwards and every
record is delivered. librdkafka keeps a partition paused across revoke and re-assignment, so
a worker that forgot its pauses at the revoke would never read that partition again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from confluent_kafka import Consumer

from syncflow.streams.topics import sync_out_topics
from syncflow.agents.sync_out.worker import consumer_config
from syncflow.emulators.targets import emulator_state

from .conftest import fast_settings, location, pointing_at, wait_for


def join_and_leave(settings, group: str, topics: list[str], until: Callable[[], bool], timeout: float = 60.0) -> list[tuple[str, int]]:
    """A second member joins, stays until it was given partitions and `until()` holds, then
    leaves; returns what it got. No fixed stay: a rebalance takes what the machine's load makes it."""
    consumer = Consumer(consumer_config(settings, group))
    got: list[tuple[str, int]] = []
    consumer.subscribe(topics, on_assign=lambda _c, ps: got.extend((p.topic, p.partition) for p in ps))
    deadline = time.monotonic() + timeout
    try:
        while not (got and until()):
            assert time.monotonic() < deadline, f"no rebalance within {timeout}s (assigned: {got})"
            consumer.consume(100, 0.2)  # reads, never commits: the records return to the worker
    finally:
        consumer.close()
    return got


async def test_held_retry_partitions_flow_again_after_a_rebalance(so_settings, one_emulator, events, start_worker) -> None:
    delay = 10.0  # the hold outlasts the rebalance: it is measured below, not assumed
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, retry_delays_s=[delay] * 3),
                    "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"fail_next": 10})
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(10)])
    w = await start_worker(s, "one")
    revoked_while_held: list[int] = []
    on_revoke = w.worker._on_revoke

    def watching_revoke(consumer, partitions):  # type: ignore[no-untyped-def]
        held = w.worker.gate.held()
        revoked_while_held.append(len(held & {(p.topic, p.partition) for p in partitions}))
        on_revoke(consumer, partitions)

    # in place before run() subscribes (its task has not run yet: no await since it was created)
    w.worker._on_revoke = watching_revoke
    await wait_for(lambda: w.worker.stats["retried"] == 10 and w.worker.gate.held(), what="retries held in tier 1")
    topics = sync_out_topics(s, "one")
    other = await asyncio.to_thread(join_and_leave, s, topics.group, topics.changes + topics.retries,
                                    lambda: any(revoked_while_held))
    assert other, "the second member never got a partition: no rebalance happened"
    assert any(revoked_while_held), "no held retry partition was revoked: the rebalance came after the hold"
    await wait_for(lambda: len(state.received) == 10, timeout=40 + delay, what="the 10 retried records delivered")
    await w.stop()
    assert sorted(a.external_id for a in state.received) == sorted(f"loc-{i}" for i in range(10))
    assert w.worker.stats["delivered"] == 10
