"""A record's trace id travels from its raw record to the target call, and `syncflow trace`
shows the whole path, on the real stack: raw records produced with known trace ids, a sync-in
handler, a sync-out worker against the ONE emulator. One record is answered 5xx once (retried,
then delivered), one is dead-lettered by sync-out (an answer it cannot keep), one by sync-in
(it breaks a rule)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from syncflow.agents.sync_in_handler import BatchProgress
from syncflow.cli import app as cli
from syncflow.cli.trace import collect
from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity, generate_world
from syncflow.emulators.targets import emulator_state
from syncflow.model import RawKey
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.roles.sync_in import SyncInRuntime, build_sync_in, prepare_stores
from syncflow.streams.headers import ENTITY_TYPE, SOURCE_SYSTEM, TRACE_ID
from syncflow.tracing import traceparent
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.records import KafkaRecord
from syncflow.settings import Settings, get_settings
from syncflow.streams.topics import SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic

from .conftest import pointing_at, read_topic, wait_for


@pytest.fixture
def rig(so_settings: Settings) -> Iterator[tuple[Settings, SyncInRuntime]]:
    """Sync-in on the same topic suffix as sync-out: raw.yardi and sync-in.dlq of its own."""
    sfx = so_settings.sync_out.topic_suffix
    s = so_settings.model_copy(update={"sync_in": so_settings.sync_in.model_copy(
        update={"topic_suffix": sfx, "group_id": f"sync-in{sfx}"})})
    names = [raw_topic("yardi") + sfx, SYNC_IN_DLQ + sfx]
    create_topics(s, [TopicSpec(n, 1, 3600_000) for n in names])
    runtime = build_sync_in(s)
    prepare_stores(s, runtime)
    try:
        yield s, runtime
    finally:
        runtime.close()
        delete_topics(s, names)


def yardi_locations(runtime: SyncInRuntime) -> tuple[Entity, Entity, Entity]:
    """Two valid yardi locations without references (nothing to wait for), one invalid."""
    world = generate_world(seed=11, volume=30, invalid_rate=0.3)
    valid, invalid = [], []
    for e in world.entities.values():
        if e.source != "yardi" or e.entity_type != "location" or e.deleted:
            continue
        if e.invalid is not None:
            invalid.append(e)
        elif not runtime.handler.transform("yardi", "location", render(e)).references:
            valid.append(e)
    return valid[0], valid[1], invalid[0]


def produce(s: Settings, runtime: SyncInRuntime, entities: list[Entity], trace_ids: list[str]) -> None:
    topic = raw_topic("yardi") + s.sync_in.topic_suffix
    codec = runtime.handler.codec
    out = [OutgoingRecord(topic, raw_key("location", e.source_id).encode(),
                          codec.encode(schema_name("yardi", "location"), render(e), topic=topic),
                          [(SOURCE_SYSTEM, b"yardi"), (ENTITY_TYPE, b"location"), (TRACE_ID, t.encode())])
           for e, t in zip(entities, trace_ids)]
    producer = ReliableProducer(s)
    try:
        producer.send_all(out)
    finally:
        producer.close()


def consumed(s: Settings, expect: int) -> list[KafkaRecord]:
    """The raw records as a sync-in worker takes them (real offsets)."""
    topic = raw_topic("yardi") + s.sync_in.topic_suffix
    return [KafkaRecord(**KafkaRecord.fields_of(m)) for m in read_topic(s, topic, expect)]


def cli_env(s: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "SYNCFLOW_DATABASE_URL": s.database_url,
        "SYNCFLOW_DATABASE_SCHEMA": s.database_schema,
        "SYNCFLOW_MONGO_URL": s.mongo_url,
        "SYNCFLOW_MONGO_DATABASE": s.mongo_database,
        "SYNCFLOW_SYNC_IN__TOPIC_SUFFIX": s.sync_in.topic_suffix,
        "SYNCFLOW_SYNC_OUT__TOPIC_SUFFIX": s.sync_out.topic_suffix,
        "SYNCFLOW_SYNC_OUT__RETRY_DELAYS_S": json.dumps(s.sync_out.retry_delays_s),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def stages(trace: dict[str, Any]) -> list[str]:
    return [f"{t['stage']}: {t['what']}" for t in trace["timeline"]]


async def test_trace_id_reaches_the_target_and_trace_shows_the_whole_path(
        rig, one_emulator, start_worker, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="syncflow.agents.sync_out")
    s, runtime = rig
    s = pointing_at(s, "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    a, b, c = yardi_locations(runtime)
    trace_a, trace_b, trace_c = (uuid.uuid4().hex for _ in range(3))
    entity_a = runtime.handler.transform("yardi", "location", render(a)).entity_id
    entity_b = runtime.handler.transform("yardi", "location", render(b)).entity_id

    # A alone first: the target answers its first call 5xx, the retry tier delivers it
    produce(s, runtime, [a], [trace_a])
    [raw_a] = consumed(s, 1)
    await asyncio.to_thread(runtime.handler.process, BatchProgress([raw_a]))
    state.set_faults({"fail_next": 1})
    w = await start_worker(s, "one")
    await wait_for(lambda: any(r.external_id == entity_a for r in state.received), what="A delivered")
    # then B, whose success answer the worker cannot keep (DLQ), and C, which breaks a rule
    state.set_faults({"answer_modes": {entity_b: "long_ref"}})
    produce(s, runtime, [b, c], [trace_b, trace_c])
    raws = consumed(s, 3)
    result = await asyncio.to_thread(runtime.handler.process, BatchProgress(raws[1:]))
    assert (result.versions, result.rejected) == (1, 1)
    await wait_for(lambda: w.worker.stats["dead-lettered"] == 1, what="B dead-lettered")
    await w.stop()

    # the worker's log: one line per batch with its counts, each failed try by name and trace id
    batches = [r for r in caplog.records if r.name == "syncflow.agents.sync_out.observe"]
    assert [sum(getattr(r, k) for r in batches) for k in ("delivered", "retried", "dead_lettered")] == [1, 1, 1]
    tries = [(r.levelname, r.trace_id, r.getMessage()) for r in caplog.records if r.name == "syncflow.agents.sync_out.batch"]
    assert [(level, trace) for level, trace, _ in tries] == [("WARNING", trace_a), ("ERROR", trace_b)]
    assert f"location:{entity_a} v1" in tries[0][2] and "retry tier 1" in tries[0][2]
    assert f"location:{entity_b} v1" in tries[1][2] and "→ dlq" in tries[1][2]

    # the trace id travelled: raw document, version row, the call the target received
    [applied_a] = [r for r in state.received if r.external_id == entity_a]
    assert applied_a.request_id == trace_a
    assert applied_a.traceparent == traceparent(trace_a, f"{entity_a}:1")
    assert applied_a.traceparent.split("-")[1] == trace_a
    assert runtime.raw_store.find_one(RawKey("yardi", "location", a.source_id))["metadata"]["traceId"] == trace_a
    with runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT entity_id, version_number FROM data_versions WHERE trace_id = :t"),
                            {"t": trace_a}).all()
    assert [tuple(r) for r in rows] == [(entity_a, 1)]

    # syncflow trace of A by its source record: the whole path, the retry included
    trace = (await asyncio.to_thread(collect, s, f"yardi:location:{a.source_id}", 1000)).to_dict()
    assert trace["resolved_as"] == "source-record"
    [doc] = trace["raw_documents"]
    assert (doc["inbound"], doc["version"], doc["trace_id"]) == ("completed", 1, trace_a)
    [raw_record] = trace["raw_records"]
    assert (raw_record["offset"], raw_record["trace_id"]) == (raw_a.offset, trace_a)
    [entity] = trace["entities"]
    assert entity["entity_id"] == entity_a
    [version] = entity["versions"]
    assert (version["version"], version["change_type"], version["trace_id"]) == (1, "create", trace_a)
    assert version["made_by"]["raw_record"] == {"topic": raw_a.topic, "partition": 0, "offset": raw_a.offset}
    assert version["published_at"] is not None and version["hash"]
    [event] = entity["change_events"]
    assert (event["topic"], event["version"], event["trace_id"]) == (changes_topic("location") + s.sync_out.topic_suffix, 1, trace_a)
    [one] = entity["targets"]
    assert (one["target"], one["sent_version"], one["applied_version"], one["status"]) == ("one", 1, 1, "synced")
    assert one["idempotency_key"] == f"{entity_a}:1" and one["dlq"] == []
    [retry] = one["retries"]
    assert (retry["retry_tier"], retry["attempt"], retry["category"], retry["version"]) == (1, 1, "transient", 1)
    assert retry["http_status"] in ("500", "502", "503")
    order = [t["stage"] for t in trace["timeline"]]
    assert order.index("source") < order.index("sync-in") < order.index("change event") < len(order) - 1
    assert any("retry tier 1" in line for line in stages(trace)), stages(trace)
    assert stages(trace)[-1].startswith("target: one: applied v1, sent v1, synced")

    # B by its canonical id: sent, not applied, in the target's DLQ with the reason
    trace = (await asyncio.to_thread(collect, s, entity_b, 1000)).to_dict()
    assert trace["resolved_as"] == "entity"
    [one] = trace["entities"][0]["targets"]
    assert (one["sent_version"], one["applied_version"], one["status"], one["retries"]) == (1, 0, "failed", [])
    [dead] = one["dlq"]
    assert (dead["category"], dead["version"], dead["idempotency_key"]) == ("unusable-answer", 1, f"{entity_b}:1")
    assert "target_ref holds at most" in dead["message"]
    assert trace["raw_documents"][0]["trace_id"] == trace_b

    # C by its trace id: a failed raw document and its sync-in DLQ record, no version
    trace = (await asyncio.to_thread(collect, s, trace_c, 1000)).to_dict()
    assert (trace["resolved_as"], trace["entities"]) == ("trace-id", [])
    [doc] = trace["raw_documents"]
    assert doc["inbound"] == "failed" and doc["errors"] and doc["source_id"] == c.source_id
    [dead] = trace["sync_in_dlq"]
    assert (dead["key"], dead["trace_id"], dead["category"]) == (f"location:{c.source_id}", trace_c, "validation")

    # the command: JSON, the rich timeline, and exit 1 for what nobody knows
    cli_env(s, monkeypatch)
    try:
        runner = CliRunner()
        out = await asyncio.to_thread(runner.invoke, cli, ["trace", trace_a, "--json", "--scan", "1000"])
        assert out.exit_code == 0, out.output
        shown = json.loads(out.stdout)
        assert shown["resolved_as"] == "trace-id" and shown["entities"][0]["entity_id"] == entity_a
        out = await asyncio.to_thread(runner.invoke, cli, ["trace", entity_a])
        assert out.exit_code == 0, out.output
        assert "timeline" in out.stdout and "retry tier 1" in out.stdout and f"{entity_a}:1" in out.stdout
        out = await asyncio.to_thread(runner.invoke, cli, ["trace", "no-such-thing-" + uuid.uuid4().hex])
        assert out.exit_code == 1
    finally:
        get_settings.cache_clear()
