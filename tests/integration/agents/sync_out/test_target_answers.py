"""No single answer of a target stops sync-out: a running worker (real Kafka, PostgreSQL)
delivers batches in which one record gets a spoiled answer from a real emulator
(answer_modes); the records around it are delivered, the spoiled one goes through the retry
tiers to the DLQ (an unreadable answer: outcome unknown) or straight to the DLQ (an answer
syncflow cannot keep), with a reason a person understands, and the worker drains on."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import pytest
from sqlalchemy import text

from syncflow.streams.topics import sync_out_topics
from syncflow.emulators.targets import emulator_state
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.settings import Settings

from .conftest import fast_settings, location, pointing_at, read_topic, service_request, wait_for

IDS = ["loc-a", "loc-b", "loc-bad", "loc-c", "loc-d"]
TRANSIENT = "bad-answer"
PERMANENT = "unusable-answer"

ONE_CASES = [
    ("bad_charset", TRANSIENT, "one answered 201 but the body is not valid utf-8"),
    ("html", TRANSIENT, "the body is not JSON (text/html)"),
    ("huge", TRANSIENT, "the body is larger than 1048576 bytes"),
    ("odd_status", TRANSIENT, "999 is not an HTTP status"),
    ("garbage_status", "transient", "no usable answer"),
    ("item_not_object", TRANSIENT, "JSON that is not an object"),
    ("long_ref", PERMANENT, "target_sync_state.target_ref holds at most 200"),
]
LESSEN_ITEM_CASES = [
    ("item_not_object", TRANSIENT, "batch result"),
    ("item_text_status", TRANSIENT, "has no usable status (http_status 'fine'"),
    ("item_odd_status", TRANSIENT, "999 is not an HTTP status"),
    ("item_wrong_index", TRANSIENT, "says it answers operation"),
    ("long_ref", PERMANENT, "target_sync_state.target_ref holds at most 200"),
]
LESSEN_BODY_CASES = [
    ("bad_charset", TRANSIENT, "lessen360 answered 200 but the body is not valid utf-8"),
    ("html", TRANSIENT, "the body is not JSON (text/html)"),
    ("huge", TRANSIENT, "the body is larger than"),
]


def row(settings: Settings, target: str, entity_id: str) -> Any:
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT status, synced_version, last_error FROM target_sync_state "
                                     "WHERE target = :t AND entity_id = :e"), {"t": target, "e": entity_id}).one()
    finally:
        engine.dispose()


async def one_bad_record_among_good_ones(settings: Settings, target: str, emulator: Any, events: Any, start_worker: Any,
                                         mode: str, category: str, words: str) -> None:
    state = emulator_state(emulator)
    state.set_faults({"answer_modes": {"loc-bad": mode}})
    events.send([events.record("location", i, 1, location(i)) for i in IDS])
    w = await start_worker(settings, target)
    stats = w.worker.stats
    await wait_for(lambda: stats["dead-lettered"] == 1 and stats["delivered"] == 4, 40, "4 deliveries and 1 DLQ")
    assert {a.external_id for a in state.received if a.external_id != "loc-bad"} == set(IDS) - {"loc-bad"}
    assert stats["batch-errors"] == 0 and not w.task.done()

    topics = sync_out_topics(settings, target)
    dlq = read_topic(settings, topics.dlq, 1)
    assert [m.key() for m in dlq] == [b"loc-bad"]
    h = read_failure_headers(dlq[0].headers())
    assert h["error.category"] == category and words in h["exception.message"], h
    assert len(h["exception.message"]) < 1500 and h["target"] == target
    if category == PERMANENT:
        assert h["attempt"] == "1" and stats["retried"] == 0
    else:  # outcome unknown: tried again under the same key through every tier, then the DLQ
        assert h["attempt"] == "4" and stats["retried"] == 3
        assert [m.key() for m in read_topic(settings, topics.tiers[0], 1)] == [b"loc-bad"]
    status, synced, last_error = row(settings, target, "loc-bad")
    assert (status, synced) == ("failed", 0) and words in last_error

    # the worker is up and drains what comes next
    events.send([events.record("location", "loc-next", 1, location("next"))])
    await wait_for(lambda: stats["delivered"] == 5, 20, "a delivery after the bad answer")
    await wait_for(lambda: w.worker.offsets.pending_count() == 0, 10, "every offset finished")
    await w.stop()


def quick(so_settings: Settings) -> Settings:
    return fast_settings(so_settings, so_settings.sync_out.topic_suffix, retry_delays_s=[0.3, 0.3, 0.3])


@pytest.mark.parametrize(("mode", "category", "words"), ONE_CASES, ids=[c[0] for c in ONE_CASES])
async def test_one_spoiled_answer_fails_only_its_record(so_settings, one_emulator, events, start_worker,
                                                        mode, category, words) -> None:
    s = pointing_at(quick(so_settings), "one", one_emulator, rate_per_minute=600_000)
    await one_bad_record_among_good_ones(s, "one", one_emulator, events, start_worker, mode, category, words)


@pytest.mark.parametrize(("mode", "category", "words"), LESSEN_ITEM_CASES, ids=[c[0] for c in LESSEN_ITEM_CASES])
async def test_lessen360_batch_result_of_the_wrong_shape_fails_only_its_record(
        so_settings, lessen_emulator, events, start_worker, mode, category, words) -> None:
    s = pointing_at(quick(so_settings), "lessen360", lessen_emulator, rate_per_minute=600_000)
    await one_bad_record_among_good_ones(s, "lessen360", lessen_emulator, events, start_worker, mode, category, words)


@pytest.mark.parametrize(("mode", "category", "words"), LESSEN_BODY_CASES, ids=[c[0] for c in LESSEN_BODY_CASES])
async def test_lessen360_spoiled_batch_answer_fails_only_its_call(
        so_settings, lessen_emulator, events, start_worker, mode, category, words) -> None:
    """A spoiled body spoils the whole call: with one record per call, only that record."""
    s = pointing_at(quick(so_settings), "lessen360", lessen_emulator, rate_per_minute=600_000, batch_max=1)
    await one_bad_record_among_good_ones(s, "lessen360", lessen_emulator, events, start_worker, mode, category, words)


def same_retry_partition(entity_id: str, partitions: int = 2) -> int:
    """The partition librdkafka's default partitioner (CRC32 of the key) gives a key."""
    return zlib.crc32(entity_id.encode()) % partitions


async def test_a_dependency_wait_does_not_queue_behind_a_long_retry_tier(so_settings, one_emulator, events, start_worker) -> None:
    """Records waiting 30 s in retry tier 1 on every partition; a service request waiting 0.4 s
    for its location is delivered right after the location, not after the 30 s."""
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, retry_delays_s=[30.0, 30.0, 30.0],
                                  dependency_retry_delay_s=0.4), "one", one_emulator, rate_per_minute=600_000)
    slow = [f"loc-slow-{n}" for n in range(20)]
    slow = [next(i for i in slow if same_retry_partition(i) == p) for p in (0, 1)]  # one on each partition
    state = emulator_state(one_emulator)
    state.set_faults({"answer_modes": {i: "odd_status" for i in slow}})
    events.send([events.record("location", i, 1, location(i)) for i in slow])
    w = await start_worker(s, "one")
    await wait_for(lambda: w.worker.stats["retried"] == 2, 20, "two records in retry tier 1")
    events.send([events.record("service_request", "sr-1", 1, service_request("loc-1"), references={"location": "loc-1"})])
    await wait_for(lambda: w.worker.stats["retried"] >= 4, 20, "the service request waiting for its location")
    events.send([events.record("location", "loc-1", 1, location(1))])
    sent_at = time.monotonic()
    await wait_for(lambda: any(a.external_id == "sr-1" for a in state.received), 15, "the service request after its location")
    assert time.monotonic() - sent_at < 10
    assert w.worker.stats["dead-lettered"] == 0
    await w.stop()
    lane = read_topic(s, sync_out_topics(s, "one").dependency, 1)
    assert lane and {m.key() for m in lane} == {b"sr-1"}
    h = read_failure_headers(lane[0].headers())
    assert h["error.category"] == "dependency" and "location:loc-1" in h["exception.message"]
    await asyncio.sleep(0)
