"""Sync-in's batch handler on the real stack (FerretDB, PostgreSQL, Kafka), without Faust:
batches of raw bytes as consumed -> raw documents, versions, change events, DLQ records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from pymongo.errors import BulkWriteError
from sqlalchemy import create_engine, select, text

from syncflow.agents.sync_in_handler import BatchProgress
from syncflow.agents.sync_in_steps import prepare_batch
from syncflow.streams.records import KafkaRecord
from syncflow.connectors.schemas import SOURCE_ENTITIES, schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity, generate_world
from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.models import DataVersion
from syncflow.model import RawKey
from syncflow.streams.admin import create_topics
from syncflow.roles.sync_in import SyncInRuntime, build_sync_in, prepare_stores
from syncflow.streams.avro import RegistryCodec, registry_client
from syncflow.streams.dead_letters import VALUE_REPLACED, read_failure_headers
from syncflow.streams.schemas import SchemaCatalogue
from syncflow.streams.headers import PRIORITY, TRACE_ID, header_value
from syncflow.settings import Settings
from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic

pytestmark = pytest.mark.integration
CHANGE_EVENT = "io.syncflow.canonical.ChangeEvent"


@dataclass
class Rig:
    settings: Settings
    runtime: SyncInRuntime
    offsets: dict[str, int]

    def message(self, source: str, entity_type: str, source_id: str, value: bytes | None, **kw: Any) -> KafkaRecord:
        topic = raw_topic(source) + self.settings.sync_in.topic_suffix
        self.offsets[topic] = self.offsets.get(topic, -1) + 1
        headers = kw.pop("headers", [(TRACE_ID, f"trace-{source_id}".encode())])
        key = kw.pop("key", raw_key(entity_type, source_id).encode())
        return KafkaRecord(topic, 0, self.offsets[topic], 1_700_000_000_000, key, value, headers)

    def native(self, entity: Entity, record: dict[str, Any] | None = None) -> KafkaRecord:
        codec = self.runtime.handler.codec
        value = codec.encode(schema_name(entity.source, entity.entity_type), record or render(entity))
        return self.message(entity.source, entity.entity_type, entity.source_id, value)

    def run(self, messages: list[KafkaRecord]):  # type: ignore[no-untyped-def]
        return self.runtime.handler.process(BatchProgress(messages))

    def topic(self, base: str) -> str:
        return base + self.settings.sync_in.topic_suffix


@pytest.fixture
def rig(settings: Settings, unique: Callable[[str], str]) -> Iterator[Rig]:
    suffix = unique("")
    names = [changes_topic(e) + suffix for e in ENTITY_TYPES] + [SYNC_IN_DLQ + suffix]
    create_topics(settings, [TopicSpec(n, 2, 3600_000) for n in names])
    s = settings.model_copy(
        update={"sync_in": settings.sync_in.model_copy(update={"topic_suffix": suffix, "group_id": unique("sync-in")})}
    )
    runtime = build_sync_in(s)
    prepare_stores(s, runtime)
    try:
        yield Rig(s, runtime, {})
    finally:
        runtime.close()
        drop_topics(settings, names)


def drop_topics(settings: Settings, names: list[str]) -> None:
    """Delete the test's topics (the admin client must outlive the futures)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(30)
        except KafkaException:
            pass


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record on the topic up to its current end."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Any] = []
        want = sum(ends.values())
        while len(out) < want:
            msg = consumer.poll(5)
            assert msg is not None, f"{topic}: only {len(out)} of {want} records readable"
            if not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def events(rig: Rig, entity_type: str) -> list[dict[str, Any]]:
    codec = rig.runtime.handler.codec
    out = []
    for msg in read_topic(rig.settings, rig.topic(changes_topic(entity_type))):
        decoded = codec.decode(msg.value())
        assert decoded.schema_name == CHANGE_EVENT and msg.key() == decoded.record["entity_id"].encode()
        out.append({**decoded.record, "_headers": msg.headers() or []})
    return out


def versions(rig: Rig) -> list[tuple[str, str, int, str]]:
    with unit_of_work(rig.runtime.engine) as s:
        rows = s.execute(select(DataVersion.entity_type, DataVersion.entity_id, DataVersion.version_number, DataVersion.change_type)
                         .order_by(DataVersion.entity_id, DataVersion.version_number)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def valid_entities() -> dict[tuple[str, str], Entity]:
    """One valid, live entity per (source, entity type) the sources provide."""
    world = generate_world(seed=7, volume=30)
    out: dict[tuple[str, str], Entity] = {}
    for e in world.entities.values():
        if e.invalid is None and not e.deleted:
            out.setdefault((e.source, e.entity_type), e)
    return out


def test_every_entity_type_of_every_source_becomes_a_version_and_an_event(rig: Rig) -> None:
    picked = valid_entities()
    expected = {(s, e) for s in SOURCES for e in SOURCE_ENTITIES[s]}
    assert set(picked) == expected
    result = rig.run([rig.native(e) for e in picked.values()])
    assert (result.records, result.versions, result.rejected) == (len(picked), len(picked), 0)
    for (source, entity_type), entity in picked.items():
        doc = rig.runtime.raw_store.find_one(RawKey(source, entity_type, entity.source_id))
        assert doc is not None and doc["syncStatus"]["inbound"] == "completed", (source, entity_type)
        assert doc["metadata"]["version"] >= 1 and doc["processedData"]["source_system"] == source
    seen = []
    for entity_type in ENTITY_TYPES:
        for ev in events(rig, entity_type):
            assert ev["event_id"] == f"{ev['entity_id']}:{ev['version']}"
            assert header_value(ev["_headers"], PRIORITY) == str(ev["priority"])
            assert header_value(ev["_headers"], TRACE_ID) == f"trace-{ev['origin_source_id']}"
            assert json.loads(ev["snapshot"])["entity_id"] == ev["entity_id"]
            seen.append((ev["origin_source"], entity_type))
    assert sorted(seen) == sorted(expected)
    with unit_of_work(rig.runtime.engine) as s:
        assert s.execute(text("SELECT count(*) FROM data_versions WHERE published_at IS NULL")).scalar() == 0
        counts = dict(s.execute(text("SELECT 'sr', count(*) FROM service_requests WHERE NOT placeholder UNION ALL SELECT 'att', count(*) FROM attachments")).all())
    assert counts["sr"] == 4 and counts["att"] == 2


def test_unchanged_resend_writes_nothing_update_makes_v2_delete_makes_v3(rig: Rig) -> None:
    entity = valid_entities()[("yardi", "service_request")]
    rig.run([rig.native(entity)])
    assert rig.run([rig.native(entity)]).versions == 0
    record = render(entity)
    changed = {**record, "FullDescription": "Water everywhere now"}
    result = rig.run([rig.native(entity, changed)])
    assert result.versions == 1
    entity.deleted = True
    deleted = render(entity)
    assert rig.run([rig.native(entity, deleted)]).versions == 1
    evs = events(rig, "service_request")
    assert [(e["version"], e["change_type"]) for e in evs] == [(1, "create"), (2, "update"), (3, "delete")]
    assert evs[1]["changed_fields"] == ["description"]
    assert "deleted" in evs[2]["changed_fields"]
    assert [v[2] for v in versions(rig) if v[0] == "service_request"] == [1, 2, 3]


def test_same_entity_twice_in_one_batch_is_applied_in_order(rig: Rig) -> None:
    entity = valid_entities()[("realpage", "location")]
    first = render(entity)
    second = {**first, "propertyName": "Renamed Towers"}
    result = rig.run([rig.native(entity, first), rig.native(entity, second), rig.native(entity, second)])
    assert result.versions == 2
    evs = events(rig, "location")
    assert [(e["version"], e["change_type"]) for e in evs] == [(1, "create"), (2, "update")]
    assert evs[1]["changed_fields"] and json.loads(evs[1]["snapshot"]) != json.loads(evs[0]["snapshot"])


def _dlq(rig: Rig) -> list[dict[str, Any]]:
    return [
        {"key": m.key(), "value": m.value(), "failure": read_failure_headers(m.headers()), "headers": m.headers()}
        for m in read_topic(rig.settings, rig.topic(SYNC_IN_DLQ))
    ]


def test_undecodable_bytes_go_to_dlq_with_headers_and_the_rest_flows(rig: Rig) -> None:
    good = valid_entities()[("insight", "resident")]
    bad = rig.message("insight", "resident", "garbage-1", b"\x00\x01not avro at all")
    result = rig.run([bad, rig.native(good)])
    assert (result.rejected, result.versions) == (1, 1)
    [dead] = _dlq(rig)
    assert dead["key"] == bad.key and dead["value"] == bad.value
    f = dead["failure"]
    assert f["error.category"] == "decode" and f["original.topic"] == bad.topic and f["original.offset"] == str(bad.offset)
    assert f["consumer.group"] == rig.settings.sync_in.group_id and f["exception.class"].endswith("DecodeError")
    assert header_value(dead["headers"], TRACE_ID) == "trace-garbage-1"


def test_unknown_schema_goes_to_dlq(rig: Rig) -> None:
    codec = rig.runtime.handler.codec
    value = bytearray(codec.encode(schema_name("yardi", "location"), render(valid_entities()[("yardi", "location")])))
    value[2:10] = b"\xde\xad\xbe\xef\xde\xad\xbe\xef"  # a fingerprint no schema has
    result = rig.run([rig.message("yardi", "location", "u-x", bytes(value))])
    assert result.rejected == 1
    assert _dlq(rig)[0]["failure"]["error.category"] == "unknown-schema"


def test_bad_key_goes_to_dlq(rig: Rig) -> None:
    entity = valid_entities()[("yardi", "location")]
    msg = rig.native(entity)
    bad = KafkaRecord(msg.topic, 0, 99, msg.timestamp_ms, b"no-colon-here", msg.value, [])
    assert rig.run([bad]).rejected == 1
    assert _dlq(rig)[0]["failure"]["error.category"] == "bad-key"


@pytest.mark.parametrize("kind", ["bad_email", "missing_required", "unknown_category", "malformed_date"])
def test_each_validation_failure_goes_to_dlq_and_marks_the_raw_doc_failed(rig: Rig, kind: str) -> None:
    world = generate_world(seed=11, volume=60, invalid_rate=0.5)
    entity = next(e for e in world.entities.values() if e.invalid == kind)
    result = rig.run([rig.native(entity)])
    assert (result.rejected, result.versions) == (1, 0)
    [dead] = _dlq(rig)
    assert dead["failure"]["error.category"] == "validation" and dead["failure"]["rule"]
    doc = rig.runtime.raw_store.find_one(RawKey(entity.source, entity.entity_type, entity.source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "failed"
    assert doc["errorLog"] and doc["errorLog"][-1]["fieldErrors"][0]["rule"] == dead["failure"]["rule"]
    assert versions(rig) == []


def test_postgres_outage_retries_the_batch_instead_of_skipping_it(rig: Rig) -> None:
    handler = rig.runtime.handler
    good_engine = handler.engine
    dead_engine = create_engine("postgresql+psycopg2://x:y@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    handler.engine, handler.relay._engine = dead_engine, dead_engine
    entity = valid_entities()[("lessen360", "service_request")]

    async def scenario() -> Any:
        task = asyncio.create_task(handler.handle_until_done([rig.native(entity)]))
        await asyncio.sleep(2.0)
        assert not task.done()
        ok, detail = handler.state.ok()
        assert not ok and "OperationalError" in detail
        # the raw document is written inside the database transaction, so not yet
        assert rig.runtime.raw_store.find_one(RawKey(entity.source, entity.entity_type, entity.source_id)) is None
        handler.engine, handler.relay._engine = good_engine, good_engine
        return await asyncio.wait_for(task, 30)

    result = asyncio.run(scenario())
    assert result.versions == 1 and handler.state.ok()[0]
    doc = rig.runtime.raw_store.find_one(RawKey(entity.source, entity.entity_type, entity.source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "completed" and doc["metadata"]["version"] == 1
    assert [e["version"] for e in events(rig, "service_request")] == [1]


def test_sweeper_publishes_versions_committed_but_never_published(rig: Rig) -> None:
    entity = valid_entities()[("yardi", "resident")]
    handler = rig.runtime.handler
    progress = BatchProgress([rig.native(entity)])
    progress.published = True  # as if the worker died right after the commit
    handler.process(progress)
    assert events(rig, "resident") == []
    assert rig.runtime.sweeper.sweep() == 1
    assert rig.runtime.sweeper.sweep() == 0
    assert [(e["version"], e["change_type"]) for e in events(rig, "resident")] == [(1, "create")]


class RefusesSourceId:
    """The raw store's collection, answering an insert of one source id's document with
    rawData as a server refusing it would (a write error for it; the others are written)."""

    def __init__(self, collection: Any, source_id: str):
        self._collection, self._source_id = collection, source_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def insert_many(self, docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        refused = [i for i, d in enumerate(docs) if d["sourceId"] == self._source_id and d["rawData"]]
        kept = [d for i, d in enumerate(docs) if i not in refused]
        if kept:
            self._collection.insert_many(kept, **kwargs)
        if refused:
            errors = [{"index": i, "code": 2, "errmsg": "document is too large (injected)"} for i in refused]
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": [], "nInserted": len(kept)})


def test_a_raw_document_the_store_refuses_is_kept_without_its_raw_data(rig: Rig) -> None:
    refused, kept = valid_entities()[("yardi", "location")], valid_entities()[("yardi", "resident")]
    store = rig.runtime.raw_store
    real = store.collection
    store.collection = RefusesSourceId(real, refused.source_id)  # type: ignore[assignment]
    try:
        result = rig.run([rig.native(refused), rig.native(kept)])
    finally:
        store.collection = real
    assert (result.versions, result.rejected) == (2, 0)  # the records are applied all the same
    assert sorted(v[0] for v in versions(rig)) == ["location", "resident"]
    doc = store.find_one(RawKey(refused.source, refused.entity_type, refused.source_id))
    assert doc is not None and doc["rawData"] == {} and doc["syncStatus"]["inbound"] == "completed"
    assert "raw store refused" in doc["errorLog"][0]["error"] and doc["metadata"]["version"] == 1
    doc = store.find_one(RawKey(kept.source, kept.entity_type, kept.source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "completed" and doc["metadata"]["version"] == 1
    assert doc["rawData"] and doc["errorLog"] == []


def _yardi(kind: str) -> Entity:
    return valid_entities()[("yardi", kind)]


def test_a_value_longer_than_its_column_is_a_validation_error_naming_the_field(rig: Rig) -> None:
    location, resident = _yardi("location"), _yardi("resident")
    record = render(location)
    record["Address"] = {**record["Address"], "City": "C" * 101}
    result = rig.run([rig.native(location, record), rig.native(resident)])
    assert (result.rejected, result.versions) == (1, 1)
    [dead] = _dlq(rig)
    f = dead["failure"]
    assert f["error.category"] == "validation" and f["rule"] == "column-fits"
    assert "city" in f["exception.message"] and "101 characters" in f["exception.message"]
    doc = rig.runtime.raw_store.find_one(RawKey("yardi", "location", location.source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "failed"
    assert doc["errorLog"][-1]["fieldErrors"][0]["field"] == "city"


def test_a_record_the_database_refuses_is_isolated_and_the_rest_of_its_batch_committed(rig: Rig) -> None:
    """The last line behind the column checks: whatever PostgreSQL refuses for its data
    (SQLSTATE class 22/23, raised by the driver itself) is one record's fault."""
    picked = [_yardi("location"), _yardi("resident"), _yardi("service_request")]
    progress = BatchProgress([rig.native(e) for e in picked])
    handler = rig.runtime.handler
    progress.prepared = prepare_batch(progress.messages, handler.topics, handler._decode, handler._transform,
                                      handler.content_hash, max_event_bytes=handler.max_message_bytes)
    middle = progress.prepared.accepted[1]
    too_long = replace(middle.entity, entity={**middle.entity.entity, "last_name": "L" * 201})
    progress.prepared.accepted[1] = replace(middle, entity=too_long)  # past the column checks
    result = handler.process(progress)
    assert (result.versions, result.rejected) == (2, 1)
    assert sorted(v[0] for v in versions(rig)) == ["location", "service_request"]
    [dead] = _dlq(rig)
    f = dead["failure"]
    assert f["error.category"] == "database-refused"
    assert "SQLSTATE 22001" in f["exception.message"] and "STRING_DATA_RIGHT_TRUNCATION" in f["exception.message"]
    doc = rig.runtime.raw_store.find_one(RawKey("yardi", "resident", picked[1].source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "failed"


def test_a_schema_registry_outage_retries_the_batch_and_never_dead_letters_it(rig: Rig) -> None:
    handler = rig.runtime.handler
    catalogue = SchemaCatalogue.load(rig.settings.schemas_dir)
    entity = _yardi("location")
    schema = schema_name("yardi", "location")
    working = RegistryCodec(catalogue, registry_client("mock://sync-in-outage"))
    value = working.encode(schema, render(entity), topic=rig.topic(raw_topic("yardi")))
    handler.codec = RegistryCodec(catalogue, registry_client("http://127.0.0.1:1"))  # nothing answers there

    async def scenario() -> Any:
        task = asyncio.create_task(handler.handle_until_done([rig.message("yardi", "location", entity.source_id, value)]))
        deadline = asyncio.get_running_loop().time() + 60
        while handler.state.ok()[0] and not task.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # the registry client retries before it gives up
        assert not task.done()
        ok, detail = handler.state.ok()
        assert not ok and "SchemaRegistryUnavailableError" in detail
        handler.codec = working
        return await asyncio.wait_for(task, 30)

    result = asyncio.run(scenario())
    assert (result.versions, result.rejected) == (1, 0)
    assert _dlq(rig) == []


def test_a_record_whose_change_event_would_not_fit_is_refused_as_too_large(rig: Rig) -> None:
    handler = rig.runtime.handler
    handler.max_message_bytes = 50_000
    big, small = _yardi("service_request"), _yardi("location")
    record = {**render(big), "FullDescription": "d" * 60_000}
    result = rig.run([rig.native(big, record), rig.native(small)])
    assert (result.versions, result.rejected) == (1, 1)
    [dead] = _dlq(rig)
    f = dead["failure"]
    assert f["error.category"] == "too-large" and "50000" in f["exception.message"]
    # the DLQ copy of a 60 KB record does not fit under 50,000 bytes either: a pointer stands in
    assert dict(dead["headers"])[VALUE_REPLACED] == b"pointer"
    pointer = json.loads(dead["value"])
    assert pointer["original.topic"] == rig.topic(raw_topic("yardi")) and pointer["original.size"] > 60_000
    doc = rig.runtime.raw_store.find_one(RawKey("yardi", "service_request", big.source_id))
    assert doc is not None and doc["syncStatus"]["inbound"] == "failed"


def test_a_near_limit_invalid_record_is_dead_lettered_as_a_pointer(rig: Rig) -> None:
    entity = _yardi("resident")
    value = rig.runtime.handler.codec.encode(schema_name("yardi", "resident"), render(entity))
    near_limit = value + b"\x00" * (rig.settings.kafka_max_message_bytes - len(value) - 100)  # trailing bytes: undecodable
    result = rig.run([rig.message("yardi", "resident", "huge-1", near_limit), rig.native(entity)])
    assert (result.versions, result.rejected) == (1, 1)
    [dead] = _dlq(rig)
    assert dead["failure"]["error.category"] in ("decode", "record-crash")
    assert dict(dead["headers"])[VALUE_REPLACED] == b"pointer" and len(dead["value"]) < 1000
    assert json.loads(dead["value"])["original.offset"] == 0
