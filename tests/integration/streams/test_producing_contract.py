"""The producer contract of docs/producing.md, held on the real stack: the page's own example
(confluent-kafka's AvroSerializer with the local schema registry, not syncflow's codec) puts
source records on a raw topic, and sync-in's batch handler makes versions and change events of
them — whichever subject the library registered them under (its default TopicNameStrategy,
`<topic>-value`, or the TopicRecordNameStrategy the page recommends); a record with a key
that breaks the contract goes to sync-in.dlq as bad-key while the others are applied."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from sqlalchemy import select

from syncflow.agents.sync_in_handler import BatchProgress
from syncflow.connectors.schemas import schema_name, source_id_of
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity, generate_world
from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.models import DataVersion
from syncflow.model import RawKey
from syncflow.streams.admin import create_topics
from syncflow.roles.sync_in import build_sync_in, prepare_stores
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.streams.records import KafkaRecord
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.topics import ENTITY_TYPES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_topic
from tests.integration.streams.conftest import registry_url

pytestmark = pytest.mark.integration

DOC = REPO_ROOT / "docs" / "producing.md"
SOURCE = "yardi"


def doc_example() -> dict[str, Any]:
    """The python example of docs/producing.md, run as it is written there."""
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own example
    return namespace


def yardi_entities() -> dict[str, Entity]:
    world = generate_world(seed=11, volume=30)
    out: dict[str, Entity] = {}
    for e in world.entities.values():
        if e.source == SOURCE and e.invalid is None and not e.deleted:
            out.setdefault(e.entity_type, e)
    return out


@pytest.fixture
def registry() -> Iterator[SchemaRegistryClient]:
    client = SchemaRegistryClient({"url": registry_url()})
    try:
        client.get_subjects()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"schema registry at {registry_url()} does not answer ({exc})", pytrace=False)
    yield client


def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "contract-reader",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        want = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Any] = []
        while len(out) < want:
            msg = consumer.poll(5)
            assert msg is not None, f"{topic}: only {len(out)} of {want} records readable"
            if not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def test_records_from_the_librarys_avro_serializer_become_versions(
    settings: Settings, unique: Callable[[str], str], registry: SchemaRegistryClient
) -> None:
    suffix = unique("")
    topic = raw_topic(SOURCE) + suffix
    names = [topic, SYNC_IN_DLQ + suffix] + [changes_topic(e) + suffix for e in ENTITY_TYPES]
    create_topics(settings, [TopicSpec(n, 2, 3600_000) for n in names])
    s = settings.model_copy(update={
        "schema_registry_url": registry_url(),
        "sync_in": settings.sync_in.model_copy(update={"topic_suffix": suffix, "group_id": unique("sync-in")}),
    })
    runtime = build_sync_in(s)
    prepare_stores(s, runtime)
    subjects_before = set(registry.get_subjects())
    try:
        example = doc_example()
        entities = yardi_entities()
        assert set(entities) == {"location", "resident", "service_request"}
        schemas = REPO_ROOT / "avro_schemas" / "sources" / SOURCE
        producer = example["raw_producer"](s.kafka_bootstrap_servers)
        # the library's default subject strategy for one record type, the recommended one for the rest
        serializers = {
            "location": example["raw_serializer"](registry, schemas / "Location.avsc", topic_subject_name_strategy),
            "resident": example["raw_serializer"](registry, schemas / "Resident.avsc"),
            "service_request": example["raw_serializer"](registry, schemas / "ServiceRequest.avsc"),
        }
        records = {t: render(e) for t, e in entities.items()}
        for entity_type, record in records.items():
            source_id = entities[entity_type].source_id
            assert source_id_of(SOURCE, entity_type, record) == source_id
            example["send"](producer, serializers[entity_type], SOURCE, entity_type, source_id, record, 7, topic=topic)
        # a record that breaks the contract: its key is not <entity_type>:<source_id>
        bad_value = serializers["location"](records["location"], example["SerializationContext"](topic, example["MessageField"].VALUE))
        producer.produce(topic, key=b"no-entity-type-here", value=bad_value)
        assert producer.flush(30) == 0

        # the subjects the library chose, and the schema ids it wrote
        default_subject = f"{topic}-value"
        record_subjects = {f"{topic}-{schema_name(SOURCE, t)}" for t in ("resident", "service_request")}
        assert {default_subject} | record_subjects <= set(registry.get_subjects()) - subjects_before
        consumed = read_all(s, topic)
        assert len(consumed) == 4
        by_key = {m.key(): m for m in consumed}
        location = by_key[f"location:{entities['location'].source_id}".encode()]
        assert location.value()[0] == 0  # Confluent wire format, not syncflow's own encoding
        assert struct.unpack(">I", location.value()[1:5])[0] == registry.get_latest_version(default_subject).schema_id

        batch = [KafkaRecord(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), m.headers() or [])
                 for m in sorted(consumed, key=lambda m: (m.partition(), m.offset()))]
        result = runtime.handler.process(BatchProgress(batch))
        assert (result.records, result.versions, result.rejected) == (4, 3, 1)

        with unit_of_work(runtime.engine) as session:
            rows = session.execute(select(DataVersion.entity_type, DataVersion.version_number, DataVersion.change_type)).all()
        assert sorted(r[0] for r in rows) == ["location", "resident", "service_request"]
        assert all(r[1] == 1 for r in rows)
        for entity_type, record in records.items():
            doc = runtime.raw_store.find_one(RawKey(SOURCE, entity_type, entities[entity_type].source_id))
            assert doc is not None and doc["syncStatus"]["inbound"] == "completed", entity_type
            assert doc["rawData"] == record, entity_type  # read back exactly as the library wrote it
        for entity_type in ("location", "resident", "service_request"):
            events = read_all(s, changes_topic(entity_type) + suffix)
            assert len(events) == 1, entity_type
            produced = by_key[f"{entity_type}:{entities[entity_type].source_id}".encode()]
            assert header_value(events[0].headers(), TRACE_ID) == header_value(produced.headers(), TRACE_ID)

        [dead] = read_all(s, SYNC_IN_DLQ + suffix)
        failure = read_failure_headers(dead.headers())
        assert failure["error.category"] == "bad-key" and dead.key() == b"no-entity-type-here"
    finally:
        runtime.close()
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result(30)
            except KafkaException:
                pass
        for subject in set(registry.get_subjects()) - subjects_before:
            if subject.startswith(topic):
                registry.delete_subject(subject)
