"""The record of what is about to be sent is a compare-and-set checked per entity, on the
session that holds the entities' advisory locks, whose keys include the database schema.
Driven batch by batch (no consumer) on the real PostgreSQL and a real ONE emulator; the races
are made deterministic with real row locks of a second connection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Engine, text

from syncflow.roles.sync_out import build_worker
from syncflow.agents.sync_out.batch import BatchProcessor, Consumed
from syncflow.model import ChangeEvent
from syncflow.agents.sync_out.priority import Entry, PriorityBuffer
from syncflow.sinks.common_db.target_state import SyncStateStore
from syncflow.emulators.targets import emulator_state
from syncflow.sinks.common_db.engine import make_engine
from syncflow.settings import Settings

from .conftest import location, pointing_at


def entries(*versions: tuple[str, int]) -> list[Entry[Consumed]]:
    buffer: PriorityBuffer[Consumed] = PriorityBuffer()
    for offset, (entity_id, version) in enumerate(versions):
        event = ChangeEvent("location", entity_id, version, "update", "yardi", f"src-{entity_id}", 5,
                            json.loads(json.dumps({"entity_id": entity_id, **location(entity_id)})), {})
        buffer.add(f"location:{entity_id}", version, 5,
                   Consumed("changes.location", 0, offset, 0, entity_id.encode(), b"", [], event, None), 0)
    return buffer.take(len(versions), 0)


@pytest.fixture
async def processor(so_settings: Settings, one_emulator) -> AsyncIterator[BatchProcessor]:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    p = build_worker(s, "one").processor
    await p.client.start()
    await asyncio.to_thread(p.limiter.ensure)
    yield p
    await p.client.close()
    p.close()


@pytest.fixture
def engine(so_settings: Settings) -> Iterator[Engine]:
    e = make_engine(so_settings, pool_size=2)
    yield e
    e.dispose()


async def blocked_by(engine: Engine, pid: int, timeout: float = 10.0) -> None:
    """Wait until some session waits for a lock held by backend `pid`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                            {"pid": pid}).scalar():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing waited for backend {pid}")


async def test_an_older_version_is_not_sent_when_a_newer_one_was_claimed_meanwhile(processor, engine, one_emulator) -> None:
    """Another worker records v3 of the entity as sent between this worker's stale check
    (which saw nothing) and its own record of v1: v1 must not be sent."""
    other = engine.connect()
    tx = other.begin()
    other.execute(text("INSERT INTO target_sync_state (entity_type, entity_id, target, sent_version, updated_at) "
                       "VALUES ('location', 'loc-c', 'one', 3, now())"))
    other_pid = other.execute(text("SELECT pg_backend_pid()")).scalar()
    try:
        task = asyncio.create_task(processor.process(entries(("loc-c", 1), ("loc-d", 1))))
        await blocked_by(engine, other_pid)  # v1's compare-and-set waits for the other worker's row
        tx.commit()
        result = await asyncio.wait_for(task, 20)
    finally:
        other.close()
    assert result.counts["stale"] == 1 and result.counts["delivered"] == 1
    assert [(a.external_id, a.version) for a in emulator_state(one_emulator).received] == [("loc-d", 1)]
    assert {e.item.event.entity_id for e in result.done} == {"loc-c", "loc-d"} and not result.put_back
    with engine.connect() as conn:
        row = conn.execute(text("SELECT sent_version, synced_version FROM target_sync_state WHERE entity_id = 'loc-c'")).one()
    assert tuple(row) == (3, 0)


async def test_nothing_is_sent_on_a_lock_the_session_lost(processor, engine, one_emulator) -> None:
    """The lock session dies (as in a database restart) after the entity was locked and found
    fresh, and another worker takes the lock: the version is not sent on the lost lock; the
    batch fails (to be put back) and goes through once the lock is free again."""
    lock_key = processor.state._lock_key(("location", "loc-l"))
    blocker = engine.connect()
    tx = blocker.begin()
    blocker.execute(text("SELECT * FROM sync_out_rate_limit WHERE target = 'one' FOR UPDATE"))
    blocker_pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar()
    other = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        task = asyncio.create_task(processor.process(entries(("loc-l", 1))))
        await blocked_by(engine, blocker_pid)  # locked, checked, now waiting for tokens
        lock_pid = processor.state.lock_backend_pid()
        assert lock_pid is not None
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock_pid}).scalar()
        # the terminated backend releases its locks as it exits, a moment after the call returns
        deadline = time.monotonic() + 30
        while not other.execute(text("SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"), {"k": lock_key}).scalar():
            assert time.monotonic() < deadline, "the terminated session still holds the lock after 30 s"
            time.sleep(0.1)
        tx.commit()
        with pytest.raises(Exception):  # noqa: B017 - a lost session surfaces as the driver's error or LocksLostError
            await asyncio.wait_for(task, 20)
        assert emulator_state(one_emulator).received == []
        refused = await processor.process(entries(("loc-l", 1)))  # a new session: the other worker holds the lock
        assert [e.item.event.entity_id for e in refused.put_back] == ["loc-l"]
        other.execute(text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": lock_key})
        done = await processor.process(entries(("loc-l", 1)))
        assert done.counts["delivered"] == 1
    finally:
        blocker.close()
        other.close()
    assert [(a.external_id, a.version) for a in emulator_state(one_emulator).received] == [("loc-l", 1)]


def test_lock_keys_include_the_schema(engine) -> None:
    """Workers of two schemas (a test beside a demo) on the same entity ids do not block
    each other; two of the same schema do."""
    key = ("location", "loc-shared")
    stores = [SyncStateStore(engine, "one", schema) for schema in ("schema_a", "schema_b", "schema_a")]
    try:
        assert [s.lock([key]) for s in stores] == [{key}, {key}, set()]
    finally:
        for s in stores:
            s.close()


def test_the_worker_locks_in_its_own_schema(so_settings) -> None:
    worker = build_worker(so_settings, "one")
    try:
        assert worker.processor.state.schema == so_settings.database_schema != "public"
    finally:
        worker.processor.close()
        worker._consumer.close()


def test_a_claim_checks_each_lock_is_still_held(engine) -> None:
    """The session is alive but no longer holds one entity's lock: nothing is claimed."""
    from syncflow.errors import LocksLostError

    store = SyncStateStore(engine, "one", "schema_c")
    held, lost = ("location", "loc-held"), ("location", "loc-lost")
    try:
        assert store.lock([held, lost]) == {held, lost}
        assert store.claim({held: 1}) == {held}
        store.unlock([lost])
        with pytest.raises(LocksLostError, match="loc-lost"):
            store.claim({held: 2, lost: 1})
        assert store.lock_backend_pid() is None  # dropped: the next lock() opens a new session
    finally:
        store.close()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT entity_id, sent_version FROM target_sync_state ORDER BY entity_id")).all()
    assert [tuple(r) for r in rows] == [("loc-held", 1)]
