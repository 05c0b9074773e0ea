"""Sync-out delivery paths on the real stack: success, retries, DLQ, dependencies, stale and
echo skips. Each test runs a real worker (Kafka, PostgreSQL) against a real target emulator."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from syncflow.streams.topics import sync_out_topics
from syncflow.emulators.targets import emulator_state
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.models import TargetSyncState
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.settings import Settings

from .conftest import delivered_versions, location, pointing_at, read_topic, service_request, wait_for


def sync_rows(settings: Settings, target: str) -> dict[str, TargetSyncState]:
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(TargetSyncState).where(TargetSyncState.target == target)).all()
        return {r.entity_id: r for r in rows}
    finally:
        engine.dispose()


async def test_every_version_delivered_once_in_order(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    events.send([events.record("location", f"loc-{i}", v, location(i, name=f"v{v}")) for v in (1, 2, 3) for i in range(20)])
    w = await start_worker(s, "one")
    state = emulator_state(one_emulator)
    await wait_for(lambda: len(state.received) >= 60, what="60 deliveries")
    # every record consumed is finished and committed: nothing is left that could still be sent
    await wait_for(lambda: w.worker.offsets.pending_count() == 0 and w.worker.offsets.committable() == {}
                   and w.worker.stats["consumed"] == 60, what="every record finished")
    await w.stop()
    versions = delivered_versions(state)
    assert versions == {f"loc-{i}": [1, 2, 3] for i in range(20)}
    assert state.out_of_order == []
    rows = sync_rows(s, "one")
    assert {k: (r.synced_version, r.status) for k, r in rows.items()} == {f"loc-{i}": (3, "synced") for i in range(20)}
    assert all(r.target_ref and r.target_ref.startswith("ONE-") for r in rows.values())
    assert w.worker.offsets.pending_count() == 0 and w.worker.offsets.committable() == {}


async def test_transient_failures_retry_then_deliver(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"fail_next": 2})
    events.send([events.record("location", "loc-a", 1, location("a"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) == 1, what="delivery after two 503s")
    await w.stop()
    assert state.counters["errors_5xx"] == 2
    assert w.worker.stats["retried"] == 2 and w.worker.stats["delivered"] == 1
    assert sync_rows(s, "one")["loc-a"].synced_version == 1


async def test_permanent_error_goes_to_dlq_with_headers_and_the_rest_flows(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    bad = {k: v for k, v in location("bad").items() if k != "property_code"}
    events.send([events.record("location", "loc-bad", 1, bad), events.record("location", "loc-good", 1, location("good"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["dead-lettered"] == 1 and len(state.received) == 1, what="DLQ + delivery")
    await w.stop()
    dlq = read_topic(s, sync_out_topics(s, "one").dlq, 1)
    assert len(dlq) == 1 and dlq[0].key() == b"loc-bad"
    h = read_failure_headers(dlq[0].headers())
    assert h["error.category"] == "permanent" and h["http.status"] == "422" and h["attempt"] == "1"
    assert h["original.topic"].startswith("changes.location") and h["target"] == "one"
    assert "propertyCode" in h["exception.message"] and h["exception.class"].endswith("PermanentTargetError")
    rows = sync_rows(s, "one")
    assert (rows["loc-bad"].status, rows["loc-bad"].synced_version) == ("failed", 0)
    assert rows["loc-good"].status == "synced"


async def test_retries_exhausted_go_to_dlq(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"error_rate": 1.0})
    events.send([events.record("location", "loc-x", 1, location("x"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["dead-lettered"] == 1, what="DLQ after the last tier")
    await w.stop()
    assert state.counters["errors_5xx"] == 4  # first try + three tiers
    dlq = read_topic(s, sync_out_topics(s, "one").dlq, 1)
    h = read_failure_headers(dlq[0].headers())
    assert h["attempt"] == "4" and h["error.category"] == "transient"
    assert h["original.topic"].startswith("changes.location") and int(h["first.failure"]) <= int(h["failed.at"])
    assert sync_rows(s, "one")["loc-x"].status == "failed"


async def test_service_request_waits_for_its_location(so_settings, lessen_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "lessen360", lessen_emulator, rate_per_minute=600_000)
    state = emulator_state(lessen_emulator)
    events.send([events.record("service_request", "sr-1", 1, service_request("loc-1"), references={"location": "loc-1"})])
    w = await start_worker(s, "lessen360")
    await wait_for(lambda: w.worker.stats["retried"] >= 2, what="dependency waits")
    assert state.received == []
    events.send([events.record("location", "loc-1", 1, location(1))])
    await wait_for(lambda: len(state.received) == 2, what="location then service request")
    await w.stop()
    assert [(a.entity_type, a.external_id) for a in state.received] == [("locations", "loc-1"), ("work_orders", "sr-1")]
    assert sync_rows(s, "lessen360")["sr-1"].synced_version == 1


async def test_stale_versions_are_skipped(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    events.send([events.record("location", "loc-s", 2, location("s"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) == 1, what="v2")
    events.send([events.record("location", "loc-s", 1, location("s")), events.record("location", "loc-t", 1, location("t")),
                 events.record("location", "loc-s", 3, location("s"))])
    # an entity's versions leave the buffer one at a time, lowest first: v3 delivered proves
    # v1 was handled before it
    await wait_for(lambda: delivered_versions(state).get("loc-s") == [2, 3] and len(state.received) == 3, what="loc-s v3, loc-t")
    await w.stop()
    assert delivered_versions(state) == {"loc-s": [2, 3], "loc-t": [1]}
    assert w.worker.stats["stale"] == 1


async def test_an_older_version_never_follows_one_handed_over_without_a_recorded_outcome(
        so_settings, one_emulator, events, start_worker) -> None:
    """A worker handed v3 to the target and died before recording it; v1, waiting in a retry
    tier meanwhile, comes due: it must not reach the target after v3."""
    from syncflow.sinks.common_db.target_state import SyncStateStore

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    engine = make_engine(s, pool_size=1)
    try:
        SyncStateStore(engine, "one").record_sending({("location", "loc-k"): 3})
    finally:
        engine.dispose()
    events.send([events.record("location", "loc-k", 1, location("k", name="v1"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["stale"] == 1, what="v1 judged stale")
    events.send([events.record("location", "loc-k", 3, location("k", name="v3"))])
    state = emulator_state(one_emulator)
    await wait_for(lambda: len(state.received) == 1, what="v3 sent again")
    await w.stop()
    assert delivered_versions(state) == {"loc-k": [3]}
    assert sync_rows(s, "one")["loc-k"].synced_version == 3


async def test_echo_is_not_sent_back_but_counts_as_held(so_settings, lessen_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "lessen360", lessen_emulator, rate_per_minute=600_000)
    state = emulator_state(lessen_emulator)
    events.send([
        events.record("location", "loc-e", 1, location("e"), origin="lessen360"),
        events.record("location", "loc-y", 1, location("y"), origin="yardi"),
    ])
    w = await start_worker(s, "lessen360")
    await wait_for(lambda: w.worker.stats["echo"] == 1 and len(state.received) == 1, what="echo skip + delivery")
    await w.stop()
    assert [a.external_id for a in state.received] == ["loc-y"]
    row = sync_rows(s, "lessen360")["loc-e"]
    assert (row.status, row.synced_version, row.target_ref) == ("synced", 1, "src-loc-e")


async def test_echo_suppression_can_be_turned_off(so_settings, lessen_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "lessen360", lessen_emulator, rate_per_minute=600_000, echo_suppression=False)
    state = emulator_state(lessen_emulator)
    events.send([events.record("location", "loc-e", 1, location("e"), origin="lessen360")])
    w = await start_worker(s, "lessen360")
    await wait_for(lambda: len(state.received) == 1, what="delivery of an echo")
    await w.stop()
    assert w.worker.stats["echo"] == 0


async def test_raw_documents_get_their_outbound_status(so_settings, one_emulator, events, start_worker) -> None:
    from syncflow.model import RawDocument, RawKey
    from syncflow.sinks.raw_store import RawRecordStore

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    store = RawRecordStore(s)
    try:
        keys = {name: RawKey("yardi", "location", f"src-{name}") for name in ("loc-r1", "loc-rbad")}
        store.upsert_raw_many([RawDocument(k, {"id": k.source_id}, "h") for k in keys.values()])
        bad = {k: v for k, v in location("rbad").items() if k != "property_code"}
        events.send([events.record("location", "loc-r1", 1, location("r1")), events.record("location", "loc-rbad", 1, bad)])
        w = await start_worker(s, "one", outbound=store)
        await wait_for(lambda: w.worker.stats["delivered"] == 1 and w.worker.stats["dead-lettered"] == 1, what="both outcomes")
        await w.stop()
        # a plain query on client_raw_data, as an operator would run it
        statuses = {d["sourceId"]: d["syncStatus"]["outbound"] for d in store.collection.find({"sourceSystem": "yardi"})}
        assert statuses == {"src-loc-r1": {"one": "synced"}, "src-loc-rbad": {"one": "failed"}}
    finally:
        store.close()


async def test_a_retry_overtaken_by_a_newer_version_is_skipped(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"fail_next": 1})  # v1's first try fails and goes to retry tier 1
    events.send([events.record("location", "loc-o", 1, location("o")), events.record("location", "loc-o", 2, location("o"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["stale"] == 1, what="v1's retry skipped as stale")
    await w.stop()
    assert delivered_versions(state) == {"loc-o": [2]}
    assert w.worker.stats["retried"] == 1 and w.worker.stats["delivered"] == 1
    row = sync_rows(s, "one")["loc-o"]
    assert (row.synced_version, row.status) == (2, "synced")


async def test_a_reference_that_never_arrives_ends_in_the_dlq(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    s = s.model_copy(update={"sync_out": s.sync_out.model_copy(update={"dependency_max_attempts": 3})})
    state = emulator_state(one_emulator)
    events.send([events.record("service_request", "sr-9", 1, service_request("loc-never"), references={"location": "loc-never"})])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["dead-lettered"] == 1, what="DLQ after three dependency waits")
    await w.stop()
    assert state.counters.get("requests", 0) == 0  # the target was never asked
    h = read_failure_headers(read_topic(s, sync_out_topics(s, "one").dlq, 1)[0].headers())
    assert (h["error.category"], h["attempt"]) == ("dependency", "3")
    assert "location:loc-never" in h["exception.message"]
    assert sync_rows(s, "one")["sr-9"].status == "failed"


async def test_undecodable_bytes_go_to_the_dlq_and_the_line_flows_on(so_settings, one_emulator, events, start_worker) -> None:
    from syncflow.streams.producer import OutgoingRecord
    from syncflow.streams.topics import changes_topic

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    topic = changes_topic("location") + s.sync_out.topic_suffix
    events.producer.send_all([OutgoingRecord(topic, b"loc-junk", b"\x00not avro at all")])
    events.send([events.record("location", "loc-fine", 1, location("fine"))])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["dead-lettered"] == 1 and len(state.received) == 1, what="DLQ + delivery")
    await w.stop()
    dlq = read_topic(s, sync_out_topics(s, "one").dlq, 1)
    assert dlq[0].value() == b"\x00not avro at all"
    h = read_failure_headers(dlq[0].headers())
    assert h["original.topic"] == topic and h["error.category"] in ("decode", "unknown-schema", "schema-mismatch")


async def test_a_lost_database_session_is_survived(so_settings, one_emulator, events, start_worker) -> None:
    """The worker's lock session is terminated by the server mid-run (as in a database
    restart): the batch is tried again on a new session, nothing is lost or doubled."""
    from sqlalchemy import text

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=1200, rate_burst_s=0.25)  # 20/s: a long run
    state = emulator_state(one_emulator)
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(60)])
    w = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) >= 10, what="a first deliveries")
    pid = w.worker.processor.state.lock_backend_pid()
    assert pid is not None
    engine = make_engine(s, pool_size=1)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        engine.dispose()
    await wait_for(lambda: len(state.received) >= 60, what="the rest after the lost session")
    await wait_for(lambda: w.worker.offsets.pending_count() == 0 and w.worker.stats["consumed"] >= 60,
                   what="every record finished")  # a doubled delivery would have come by now
    await w.stop()
    assert sorted(a.external_id for a in state.received) == sorted(f"loc-{i}" for i in range(60))
    assert w.worker.stats["batch-errors"] >= 1  # the loss was met, and survived


async def test_a_replay_of_the_changes_topic_sends_nothing_again(so_settings, one_emulator, events, start_worker) -> None:
    from confluent_kafka import Consumer, TopicPartition

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    events.send([events.record("location", f"loc-{i}", v, location(i)) for v in (1, 2) for i in range(10)])
    first = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) == 20, what="20 deliveries")
    await first.stop()

    topics = sync_out_topics(s, "one")
    topic = next(t for t in topics.changes if t.startswith("changes.location"))
    rewind = Consumer({"bootstrap.servers": s.kafka_bootstrap_servers, "group.id": topics.group, "enable.auto.commit": False})
    try:  # what `syncflow replay --to-earliest` does while the group is empty
        partitions = rewind.list_topics(topic, timeout=10).topics[topic].partitions
        rewind.commit(offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False)
    finally:
        rewind.close()

    second = await start_worker(s, "one")
    await wait_for(lambda: second.worker.stats["stale"] == 20, what="20 stale skips")
    await second.stop()
    assert len(state.received) == 20 and state.counters.get("replays", 0) == 0


async def test_a_service_request_in_the_same_batch_as_its_location_follows_it(so_settings, one_emulator) -> None:
    """Driven batch by batch (no consumer): the location is delivered, its service request
    waits in the buffer for the next batch instead of a retry tier."""
    import json

    from syncflow.roles.sync_out import build_worker
    from syncflow.agents.sync_out.batch import Consumed
    from syncflow.model import ChangeEvent
    from syncflow.agents.sync_out.priority import PriorityBuffer

    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600_000)
    worker = build_worker(s, "one")
    processor = worker.processor
    await processor.client.start()
    await asyncio.to_thread(processor.limiter.ensure)
    try:
        def consumed(offset: int, entity_type: str, entity_id: str, snapshot: dict, references: dict) -> Consumed:
            event = ChangeEvent(entity_type, entity_id, 1, "create", "yardi", f"src-{entity_id}", 5,
                                json.loads(json.dumps({"entity_id": entity_id, **snapshot})), references)
            return Consumed("changes.x", 0, offset, 0, entity_id.encode(), b"", [], event, None)

        buffer: PriorityBuffer[Consumed] = PriorityBuffer()
        buffer.add("service_request:sr-7", 1, 1, consumed(0, "service_request", "sr-7", service_request("loc-7"), {"location": "loc-7"}), 0)
        buffer.add("location:loc-7", 1, 5, consumed(1, "location", "loc-7", location(7), {}), 0)
        first = await processor.process(buffer.take(10, 0))
        assert [e.item.event.entity_id for e in first.done] == ["loc-7"]
        assert [e.item.event.entity_id for e in first.put_back] == ["sr-7"]
        assert first.counts["deferred"] == 1 and first.counts["retried"] == 0
        second = await processor.process(first.put_back)
        assert [e.item.event.entity_id for e in second.done] == ["sr-7"] and second.counts["delivered"] == 1
    finally:
        await processor.client.close()
        processor.close()
    state = emulator_state(one_emulator)
    assert [(a.entity_type, a.external_id) for a in state.received] == [("locations", "loc-7"), ("work-orders", "sr-7")]
