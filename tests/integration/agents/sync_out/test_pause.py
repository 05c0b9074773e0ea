"""`syncflow pause --target one --property P2` on running workers: ONE receives nothing of
P2 (its locations, and a service request whose location is in P2, found through the common
database), no retry, no DLQ, no rate-limit token, nothing committed past the held records;
P1 at ONE and everything at Lessen360 flow on. After a resume the held records reach ONE
in version order. A pause survives a worker restart (the new worker reads the held records
again from the uncommitted offsets and holds them again)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from syncflow.streams.topics import sync_out_topics
from syncflow.roles.sync_out import add_observability
from syncflow.emulators.targets import emulator_state
from syncflow.streams.admin import admin_client, group_lag
from syncflow.sinks.common_db.pauses import pause, resume
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.health import HealthCheck
from syncflow.settings import Settings

from .conftest import delivered_versions, location, pointing_at, service_request, wait_for
from .test_429_hold import topic_sizes

P1 = [f"p1-loc-{i}" for i in range(6)]
P2 = [f"p2-loc-{i}" for i in range(3)]
SR = "p2-sr-1"


def fast_pauses(settings: Settings) -> Settings:
    return settings.model_copy(update={"ops": settings.ops.model_copy(update={"pause_refresh_s": 0.3})})


def send_world(events) -> None:  # noqa: ANN001 - the conftest's EventFactory
    """P1 locations v1; P2 locations v1..v3 (interleaved with P1); a service request on a P2
    location, whose property only the common database knows."""
    recs = [events.record("location", e, 1, location(e, property_code="P1")) for e in P1[:3]]
    recs += [events.record("location", e, v, location(e, property_code="P2", name=f"v{v}")) for v in (1, 2, 3) for e in P2]
    recs += [events.record("location", e, 1, location(e, property_code="P1")) for e in P1[3:]]
    recs += [events.record("service_request", SR, 1, service_request(P2[0]), references={"location": P2[0]})]
    events.send(recs)


def add_location_rows(settings: Settings) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.begin() as conn:
            for e in P1 + P2:
                conn.execute(text("INSERT INTO locations (entity_id, property_code, location_type) VALUES (:e, :p, 'unit')"),
                             {"e": e, "p": "P1" if e in P1 else "P2"})
    finally:
        engine.dispose()


def pause_p2(settings: Settings) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        pause(engine, "sync-out", "one", prop="p2", reason="P2 migration at ONE", by="test")
    finally:
        engine.dispose()


def resume_p2(settings: Settings) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        assert resume(engine, "sync-out", "one", prop="P2") is not None
    finally:
        engine.dispose()


def lag(settings: Settings, target: str) -> int:
    topics = sync_out_topics(settings, target)
    return sum(group_lag(admin_client(settings), topics.group, topics.changes + topics.retries).values())


async def test_paused_property_is_held_others_flow_and_resume_delivers_in_order(
        so_settings, one_emulator, lessen_emulator, events, start_worker) -> None:
    s = fast_pauses(pointing_at(pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000),
                                "lessen360", lessen_emulator, rate_per_minute=600_000))
    add_location_rows(s)
    pause_p2(s)
    one, lessen = emulator_state(one_emulator), emulator_state(lessen_emulator)
    w_one = await start_worker(s, "one")
    registry = CollectorRegistry()
    add_observability(s, w_one.worker, registry, HealthCheck(s.ops))
    tokens: list[int] = []  # tokens asked of ONE's shared bucket
    acquire = w_one.worker.processor.limiter.try_acquire
    w_one.worker.processor.limiter.try_acquire = lambda n: (tokens.append(n), acquire(n))[1]  # type: ignore[method-assign]
    w_lessen = await start_worker(s, "lessen360")
    send_world(events)

    held = len(P2) * 3 + 1
    # another property at the same target, and every property at another target, flow
    await wait_for(lambda: sorted(delivered_versions(lessen)) == sorted(P1 + P2 + [SR]), timeout=60, what="all at Lessen360")
    await wait_for(lambda: set(delivered_versions(one)) == set(P1), timeout=60, what="P1 at ONE")
    await wait_for(lambda: w_one.worker.hold.count == held, timeout=10, what="P2 held at ONE")
    await wait_for(lambda: w_one.worker.offsets.pending_count() == held, timeout=10, what="P1 committed")
    await asyncio.sleep(2.0)  # several refreshes and batches later, still nothing of P2
    assert set(delivered_versions(one)) == set(P1)
    assert delivered_versions(lessen)[P2[0]] == [1, 2, 3]
    stats = w_one.worker.stats
    assert stats["retried"] == 0 and stats["dead-lettered"] == 0 and stats["rate-limited"] == 0, dict(stats)
    assert sum(tokens) == len(P1)  # tokens only for what was sent
    topics = sync_out_topics(s, "one")
    assert topic_sizes(s, topics.retries + [topics.dlq]) == dict.fromkeys(topics.retries + [topics.dlq], 0)
    w_one.worker._commit()  # noqa: SLF001 - whatever could be committed is; the held records are not
    # nothing committed past a held record (P1 records behind one on its partition count too)
    assert held <= lag(s, "one") <= held + len(P1)
    metrics = generate_latest(registry).decode()
    assert 'syncflow_paused_scopes{side="sync-out",system="one"} 1.0' in metrics
    assert f'syncflow_held_records{{side="sync-out",system="one"}} {held}.0' in metrics

    resumed_at = time.monotonic()
    resume_p2(s)
    await wait_for(lambda: len(one.received) == len(P1) + held, timeout=30, what="P2 at ONE after resume")
    assert time.monotonic() - resumed_at < 10
    versions = delivered_versions(one)
    assert all(versions[e] == [1, 2, 3] for e in P2), versions  # in version order, once each
    assert versions[SR] == [1]
    order = [a.external_id for a in one.received]
    assert order.index(SR) > order.index(P2[0])  # its location went first
    await wait_for(lambda: w_one.worker.offsets.pending_count() == 0, timeout=10, what="all finished")
    await w_one.stop()
    await w_lessen.stop()
    assert lag(s, "one") == 0
    assert w_one.worker.stats["dead-lettered"] == 0 and w_one.worker.stats["retried"] == 0
    assert topic_sizes(s, topics.retries + [topics.dlq]) == dict.fromkeys(topics.retries + [topics.dlq], 0)


async def test_pause_survives_a_worker_restart(so_settings, one_emulator, events, start_worker) -> None:
    s = fast_pauses(pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000))
    add_location_rows(s)
    pause_p2(s)
    one = emulator_state(one_emulator)
    send_world(events)
    first = await start_worker(s, "one")
    held = len(P2) * 3 + 1
    await wait_for(lambda: set(delivered_versions(one)) == set(P1) and first.worker.hold.count == held,
                   timeout=60, what="P1 delivered, P2 held")
    await first.stop()  # commits up to the held records, not past them
    assert held <= lag(s, "one") <= held + len(P1)

    second = await start_worker(s, "one")  # reads the held records again and holds them again
    await wait_for(lambda: second.worker.hold.count == held, timeout=30, what="held again by the new worker")
    await asyncio.sleep(1.5)
    assert set(delivered_versions(one)) == set(P1)
    resume_p2(s)
    await wait_for(lambda: len(one.received) >= len(P1) + held, timeout=30, what="P2 after resume")
    versions = delivered_versions(one)
    assert all(versions[e] == [1, 2, 3] for e in P2) and all(versions[e] == [1] for e in P1), versions
    await wait_for(lambda: second.worker.offsets.pending_count() == 0, timeout=10, what="all finished")
    await second.stop()
    assert lag(s, "one") == 0
