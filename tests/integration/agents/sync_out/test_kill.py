"""A sync-out worker process killed with SIGKILL mid-batch, then restarted: nothing lost,
each (entity, version) applied once at the target, never version n after n+1; SIGTERM then
finishes in flight, commits and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import aiohttp

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from syncflow.agents.sync_out import sync_out_topics
from syncflow.emulators.targets import emulator_state, emulator_url
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.settings import Settings

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


def committed_lag(settings: Settings) -> int:
    """Records of the changes topic not yet committed by the worker's group."""
    topics = sync_out_topics(settings, "one")
    topic = next(t for t in topics.changes if t.startswith("changes.location"))
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": topics.group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        lag = 0
        for tp in c.committed(parts, timeout=10):
            _, high = c.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


async def test_sigkill_mid_batch_then_restart_loses_and_repeats_nothing(so_settings, one_emulator, events) -> None:
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": 20})  # deliveries in flight when the kill lands
    events.send([events.record("location", f"loc-{i}", v, location(i, name=f"v{v}")) for v in range(1, VERSIONS + 1) for i in range(ENTITIES)])
    total = ENTITIES * VERSIONS

    first = worker_process(so_settings, emulator_url(one_emulator))
    try:
        await wait_for(lambda: len(state.received) >= total // 4, timeout=60, what="a quarter delivered")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = len(state.received)
        assert at_kill < total, "the kill should land mid-run"
    finally:
        if first.poll() is None:
            first.kill()

    web_port = free_port()
    second = worker_process(so_settings, emulator_url(one_emulator), web_port)
    try:
        await wait_for(lambda: len(state.entities) == ENTITIES and all(e.version == VERSIONS for e in state.entities.values()),
                       timeout=90, what="every entity at its last version")
        await asyncio.sleep(1.0)
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
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()

    applied = [(a.external_id, a.version) for a in state.received]
    print(f"kill after {at_kill} of {total}; replays absorbed by idempotency keys: {state.counters.get('replays', 0)}")
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
