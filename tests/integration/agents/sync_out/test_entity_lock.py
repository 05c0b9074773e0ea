"""Per-entity locking across the workers of one group: an entity whose newer version arrives
on a changes-topic partition owned by one worker while its older version comes due in a
retry tier owned by the other is never sent by both at once, and never out of order. The
target holds its answers until both workers have tried to lock their batch, so the two
workers meet on every entity whatever the machine's timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from syncflow.streams.topics import changes_topic, sync_out_topics
from syncflow.emulators.targets import EmulatorState, emulator_state
from syncflow.errors import TransientTargetError
from syncflow.streams.avro import codec_for
from syncflow.streams.dead_letters import RETRY_DUE_HEADER, FailureContext, failure_headers
from syncflow.streams.headers import PRIORITY
from syncflow.streams.producer import OutgoingRecord
from syncflow.sinks.common_db.target_state import LockedState

from .conftest import delivered_versions, location, pointing_at, wait_for
from .test_delivery import sync_rows

ENTITIES = 40


class InFlight:
    """Which entities the emulated target is serving a request for, at every moment: a
    request starts at the target's guard (before its latency) and ends when it is applied or
    answered from its idempotency key. A second request for an entity that has one in flight
    is an overlap. Requests wait at the guard until `opened` is set."""

    def __init__(self, state: EmulatorState, opened: asyncio.Event):
        self.now: dict[str, int] = {}
        self.overlaps: list[str] = []
        guard, apply, replay = state.guard, state.apply, state.replay

        async def watched_guard(request: Any, cost: int = 1) -> None:
            entity = request.match_info.get("external_id", "?")
            if self.now.get(entity):
                self.overlaps.append(entity)
            self.now[entity] = self.now.get(entity, 0) + 1
            try:
                await asyncio.wait_for(opened.wait(), 60)
                await guard(request, cost)
            except BaseException:
                self._end(entity)
                raise

        def watched_apply(entity_type: str, external_id: str, *args: Any) -> Any:
            self._end(external_id)
            return apply(entity_type, external_id, *args)

        def watched_replay(key: str | None) -> Any:
            answer = replay(key)
            if answer is not None and key:
                self._end(key.rsplit(":", 1)[0])
            return answer

        state.guard, state.apply, state.replay = watched_guard, watched_apply, watched_replay  # type: ignore[method-assign]

    def _end(self, entity: str) -> None:
        self.now[entity] = max(0, self.now.get(entity, 0) - 1)


def refusals(worker: Any, tried: Callable[[], None]) -> list[int]:
    """Counts, per call, the entities the worker's lock call found busy in another worker;
    `tried()` after each call with entities."""
    refused: list[int] = []
    lock_and_read: Callable[..., LockedState] = worker.processor.state.lock_and_read

    def watched_lock(keys: list[Any], also_read: Any = ()) -> LockedState:
        got = lock_and_read(keys, also_read)
        refused.append(len(set(keys) - got.locked))
        if keys:
            tried()
        return got

    worker.processor.state.lock_and_read = watched_lock
    return refused


async def test_an_entity_due_in_a_retry_tier_and_on_a_changes_partition_of_two_workers(so_settings, one_emulator, events,
                                                                                        start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000, concurrency=ENTITIES)
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": 100})
    # the worst case, made certain: the target answers nothing until both workers have tried
    # to lock their batch, so whichever worker goes first is still sending when the other
    # meets the same entities
    opened, loop, tried_by = asyncio.Event(), asyncio.get_running_loop(), set()
    in_flight = InFlight(state, opened)
    w1 = await start_worker(s, "one")
    w2 = await start_worker(s, "one")

    def tried(worker: Any) -> Callable[[], None]:
        def mark() -> None:
            tried_by.add(id(worker))
            if len(tried_by) == 2:
                loop.call_soon_threadsafe(opened.set)
        return mark

    refused = {id(w1): refusals(w1.worker, tried(w1)), id(w2): refusals(w2.worker, tried(w2))}
    topics = sync_out_topics(s, "one")
    loc_topic = changes_topic("location") + s.sync_out.topic_suffix
    tier1 = topics.tiers[0]
    wanted = {(loc_topic, p) for p in range(4)} | {(tier1, p) for p in range(2)}

    def settled() -> bool:
        a, b = w1.worker.assigned, w2.worker.assigned
        return bool(a) and bool(b) and not (a & b) and wanted <= (a | b)

    await wait_for(settled, timeout=60, what="the partitions shared between the two workers")
    owner = {tp: (w1 if tp in w1.worker.assigned else w2) for tp in wanted}
    assignment = (set(w1.worker.assigned), set(w2.worker.assigned))

    # per entity: v2 on a changes partition of one worker, v1 (its first try failed, due now)
    # on a tier-1 partition of the other
    codec = codec_for(s)
    out = []
    for i in range(ENTITIES):
        entity = f"loc-{i}"
        changes_p = i % 4
        owner_of_changes = owner[(loc_topic, changes_p)]
        retry_ps = [p for p in range(2) if owner[(tier1, p)] is not owner_of_changes]
        assert retry_ps, f"both tier-1 partitions belong to the owner of {loc_topic}[{changes_p}]: {assignment}"
        v1, v2 = (events.record("location", entity, v, location(i, name=f"v{v}")) for v in (1, 2))
        now_ms = int(time.time() * 1000)
        ctx = FailureContext(original_topic=loc_topic, original_partition=changes_p, original_offset=0,
                             original_timestamp_ms=now_ms, consumer_group=topics.group,
                             error=TransientTargetError("503 from the target"), attempt=1, http_status=503, target="one")
        retry_headers = [(PRIORITY, b"5"), *failure_headers(ctx), (RETRY_DUE_HEADER, str(now_ms).encode())]
        out.append(OutgoingRecord(tier1, entity.encode(), codec.encode("io.syncflow.canonical.ChangeEvent", v1, topic=tier1),
                                  retry_headers, partition=retry_ps[0]))
        out.append(OutgoingRecord(loc_topic, entity.encode(), codec.encode("io.syncflow.canonical.ChangeEvent", v2, topic=loc_topic),
                                  [(PRIORITY, b"5")], partition=changes_p))
    events.producer.send_all(out)

    await wait_for(lambda: len(state.entities) == ENTITIES and all(e.version == 2 for e in state.entities.values())
                   and w1.worker.offsets.pending_count() == 0 and w2.worker.offsets.pending_count() == 0,
                   timeout=90, what="every entity at version 2, both workers idle")
    assert (set(w1.worker.assigned), set(w2.worker.assigned)) == assignment, "a rebalance moved the partitions during the test"
    await w1.stop()
    await w2.stop()

    assert in_flight.overlaps == [], f"sent by both workers at once: {sorted(set(in_flight.overlaps))}"
    assert state.out_of_order == []
    versions = delivered_versions(state)
    assert set(versions) == {f"loc-{i}" for i in range(ENTITIES)}
    assert all(v in ([2], [1, 2]) for v in versions.values()), versions
    rows = sync_rows(s, "one")
    assert {k: r.synced_version for k, r in rows.items()} == {f"loc-{i}": 2 for i in range(ENTITIES)}
    busy = sum(sum(r) for r in refused.values())
    stale = w1.worker.stats["stale"] + w2.worker.stats["stale"]
    print(f"lock refusals {busy}, v1 sent first {sum(v == [1, 2] for v in versions.values())}, v1 stale {stale}")
    assert busy > 0, "the two workers never met on an entity: the lock was not exercised"
