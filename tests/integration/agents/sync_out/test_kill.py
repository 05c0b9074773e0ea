"""A sync-out worker process killed with SIGKILL mid-batch, then restarted: nothing lost,
each (entity, version) applied once at the target, never version n after n+1, and only what
was delivered but not recorded at the kill is sent again (under its idempotency key). A
worker stopped with SIGTERM while deliveries are in flight finishes them, records them,
commits exactly up to them and exits 0; the next worker sends exactly the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from syncflow.streams.topics import sync_out_topics
from syncflow.emulators.targets import emulator_state, emulator_url
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.avro import codec_for
from syncflow.settings import Settings

from .conftest import location, wait_for

ENTITIES, VERSIONS = 100, 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_process(settings: Settings, base_url: str, web_port: int | None = None) -> subprocess.Popen[bytes]:
    """`python -m syncflow sync-out run --target one`, configured through SYNCFLOW_* env."""
    so = settings.sync_out
    env = {
        **os.environ,
        "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SYNCFLOW_DATABASE_URL": settings.database_url,
        "SYNCFLOW_DATABASE_SCHEMA": settings.database_schema,
        "SYNCFLOW_MONGO_URL": settings.mongo_url,
        "SYNCFLOW_MONGO_DATABASE": settings.mongo_database,
        "SYNCFLOW_SYNC_OUT__TOPIC_SUFFIX": so.topic_suffix,
        "SYNCFLOW_SYNC_OUT__RETRY_DELAYS_S": str(so.retry_delays_s),
        "SYNCFLOW_SYNC_OUT__SESSION_TIMEOUT_MS": str(so.session_timeout_ms),
        "SYNCFLOW_SYNC_OUT__POLL_TIMEOUT_S": "0.1",
        "SYNCFLOW_SYNC_OUT__BATCH_SIZE": "50",
        "SYNCFLOW_SYNC_OUT__TARGETS__ONE__BASE_URL": base_url,
        "SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUTE": "600000",
        "SYNCFLOW_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "syncflow", "sync-out", "run", "--target", "one", "--web-port", str(web_port or free_port())]
    return subprocess.Popen(cmd, env=env)


def alive(proc: subprocess.Popen[bytes], done: Callable[[], bool]) -> Callable[[], bool]:
    """`done`, failing at once when the worker process has exited."""
    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited with {proc.returncode}")
        return done()
    return check


def location_topic(settings: Settings) -> str:
    return next(t for t in sync_out_topics(settings, "one").changes if t.startswith("changes.location"))


def committed_lag(settings: Settings) -> int:
    """Records of the changes topic not yet committed by the worker's group."""
    return len(uncommitted(settings))


def committed_offsets(settings: Settings) -> dict[int, int]:
    """partition → the group's committed offset on the location changes topic (0 if none)."""
    topic = location_topic(settings)
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": sync_out_topics(settings, "one").group,
                  "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        return {tp.partition: max(tp.offset, 0) for tp in c.committed(parts, timeout=10)}
    finally:
        c.close()


def partition_records(settings: Settings) -> dict[int, list[tuple[int, str, int]]]:
    """partition → (offset, entity id, version) of every record on the location changes topic."""
    topic = location_topic(settings)
    codec = codec_for(settings)
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "reader", "enable.auto.commit": False})
    try:
        out: dict[int, list[tuple[int, str, int]]] = {}
        for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = []
            if low >= high:
                continue
            c.assign([TopicPartition(topic, p, low)])
            while not out[p] or out[p][-1][0] < high - 1:
                msg = c.poll(10)
                assert msg is not None, f"{topic}[{p}]: not readable up to {high}"
                if msg.error() is None:
                    record = codec.decode(msg.value(), topic=topic).record
                    out[p].append((msg.offset(), record["entity_id"], record["version"]))
        return out
    finally:
        c.close()


def uncommitted(settings: Settings) -> list[tuple[str, int]]:
    """(entity id, version) of every record at or after the group's committed offset: what
    the next worker of the group will read."""
    committed = committed_offsets(settings)
    return [(eid, v) for p, records in partition_records(settings).items() for o, eid, v in records if o >= committed[p]]


async def wait_all_committed(settings: Settings, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the worker's group has committed every record of the changes topic."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(committed_lag, settings):
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for the group to commit everything")
        await asyncio.sleep(0.2)


def synced_versions(settings: Settings) -> dict[str, int]:
    """entity id → synced_version in target_sync_state (what the workers recorded)."""
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT entity_id, synced_version FROM target_sync_state WHERE target = 'one'")).all()
    finally:
        engine.dispose()
    return {eid: v for eid, v in rows if v}


async def test_sigkill_mid_batch_then_restart_loses_and_repeats_nothing(so_settings, one_emulator, events) -> None:
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": 20})  # deliveries in flight when the kill lands
    events.send([events.record("location", f"loc-{i}", v, location(i, name=f"v{v}")) for v in range(1, VERSIONS + 1) for i in range(ENTITIES)])
    total = ENTITIES * VERSIONS

    first = worker_process(so_settings, emulator_url(one_emulator))
    try:
        await wait_for(alive(first, lambda: len(state.received) >= total // 4), timeout=60, what="a quarter delivered")
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        at_kill = len(state.received)
        assert at_kill < total, "the kill should land mid-run"
        replays_at_kill = state.counters.get("replays", 0)
        recorded_at_kill = sum(synced_versions(so_settings).values())  # (entity, version)s recorded as synced
    finally:
        if first.poll() is None:
            first.kill()

    web_port = free_port()
    second = worker_process(so_settings, emulator_url(one_emulator), web_port)
    try:
        await wait_for(alive(second, lambda: len(state.entities) == ENTITIES and all(e.version == VERSIONS for e in state.entities.values())),
                       timeout=90, what="every entity at its last version")
        await wait_all_committed(so_settings, second)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{web_port}") as web:
            async with web.get("/status") as r:
                status = await r.json()
            async with web.get("/metrics") as r:
                exposition = await r.text()
            async with web.get("/health") as r:
                assert r.status == 200
        assert status["pending_offsets"] == 0 and status["stats"]["delivered"] + status["stats"].get("stale", 0) > 0
        assert 'syncflow_sync_out_success_total{entity_type="location",outcome="delivered",target="one"}' in exposition
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        if second.poll() is None:
            second.kill()

    applied = [(a.external_id, a.version) for a in state.received]
    replays = state.counters.get("replays", 0) - replays_at_kill
    print(f"kill after {at_kill} of {total} ({recorded_at_kill} recorded); replays absorbed by idempotency keys: {replays}")
    # sent again: only what the target applied and the dead worker had not recorded
    assert replays <= at_kill - recorded_at_kill, (replays, at_kill, recorded_at_kill)
    assert len(applied) == total and set(applied) == {(f"loc-{i}", v) for i in range(ENTITIES) for v in range(1, VERSIONS + 1)}
    per_entity: dict[str, list[int]] = {}
    for eid, v in applied:
        per_entity.setdefault(eid, []).append(v)
    assert all(vs == list(range(1, VERSIONS + 1)) for vs in per_entity.values())
    assert state.out_of_order == []
    engine = make_engine(so_settings, pool_size=1)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT synced_version, count(*) FROM target_sync_state WHERE target = 'one' GROUP BY 1")).all()
    finally:
        engine.dispose()
    assert versions == [(VERSIONS, ENTITIES)]
    assert committed_lag(so_settings) == 0


async def test_sigterm_with_deliveries_in_flight_finishes_records_and_commits_exactly_up_to_the_rest(so_settings, one_emulator, events) -> None:
    entities, versions = 100, 2
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": 300})  # a batch at concurrency 8 takes seconds
    everything = {(f"loc-{i}", v) for i in range(entities) for v in range(1, versions + 1)}
    # an entity's versions next to each other: a fetch brings versions that wait in the buffer
    # behind their entity's version in flight
    events.send([events.record("location", f"loc-{i}", v, location(i, name=f"v{v}")) for i in range(entities) for v in range(1, versions + 1)])

    first = worker_process(so_settings, emulator_url(one_emulator))
    try:
        await wait_for(alive(first, lambda: len(state.received) >= 10), timeout=90, what="the first deliveries")
        first.send_signal(signal.SIGTERM)
        at_signal = len(state.received)
        code = await asyncio.to_thread(first.wait, 60)  # the emulator keeps answering meanwhile
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 0
    delivered = [(a.external_id, a.version) for a in state.received]
    assert len(delivered) == len(set(delivered))
    assert at_signal < len(delivered) < len(everything), (
        f"{at_signal} delivered at SIGTERM, {len(delivered)} at exit, of {len(everything)}: "
        "the batch in flight must finish and the backlog stay")
    assert state.counters.get("requests", 0) == len(delivered), "a request was left unanswered or failed"
    # what was delivered before exit is recorded ...
    recorded = synced_versions(so_settings)
    assert recorded == {eid: max(v for e, v in delivered if e == eid) for eid, _ in delivered}
    # ... and committed exactly up to the first record not delivered, on every partition:
    # the next worker reads every undelivered record and, before the first one, nothing
    committed = committed_offsets(so_settings)
    records = partition_records(so_settings)
    done = set(delivered)
    for p, recs in records.items():
        first_undelivered = next((o for o, eid, v in recs if (eid, v) not in done), recs[-1][0] + 1 if recs else 0)
        assert committed[p] == first_undelivered, f"partition {p}: committed {committed[p]}, first undelivered {first_undelivered}"
    left = uncommitted(so_settings)
    assert everything - done <= set(left)
    print(f"SIGTERM at {at_signal} delivered: {len(delivered)} delivered by exit, {len(left)} records left "
          f"({len(set(left) & done)} of them delivered after an undelivered one: stale for the next worker)")

    state.set_faults({"latency_ms": 0})
    before = len(delivered)
    second = worker_process(so_settings, emulator_url(one_emulator))
    try:
        await wait_for(alive(second, lambda: len(state.received) >= len(everything)), timeout=90, what="the rest delivered")
        await wait_all_committed(so_settings, second)  # every record handled: a duplicate would have come by now
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 60) == 0
    finally:
        if second.poll() is None:
            second.kill()
    applied = [(a.external_id, a.version) for a in state.received]
    assert len(applied) == len(everything) and set(applied) == everything  # no (entity, version) applied twice
    assert set(applied[before:]) == everything - done
    assert state.counters.get("replays", 0) == 0  # none even sent again under its idempotency key
    assert state.counters.get("requests", 0) == len(everything)
    assert state.out_of_order == []
    assert synced_versions(so_settings) == {f"loc-{i}": versions for i in range(entities)}
    assert uncommitted(so_settings) == []
