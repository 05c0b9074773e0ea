"""Sync-in's pure steps: key parsing, routing of bad input, and change-event records (with
the real Avro codec and schema files)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from syncflow.model import CHANGE_EVENT_SCHEMA, EntityRecord, NewVersion
from syncflow.agents.change_events import change_records, event_size_bound
from syncflow.agents.hashing import content_hash
from syncflow.agents.rules import CanonicalRecord
from syncflow.agents.sync_in_steps import check_fits, parse_key, prepare_batch
from syncflow.streams.topics import SyncInTopics
from syncflow.streams.records import KafkaRecord
from syncflow.errors import DecodeError, FieldError, RawKeyError, TooLargeError, ValidationError
from syncflow.streams.avro import DecodedRecord, SingleObjectCodec
from syncflow.streams.headers import ENTITY_TYPE, PRIORITY, TRACE_ID, header_value
from syncflow.streams.schemas import SchemaCatalogue
from syncflow.sinks.common_db.limits import entity_json
from syncflow.settings import Settings

TOPICS = SyncInTopics({"raw.yardi-x": "yardi"}, "sync-in.dlq-x", "-x")


def test_topics_from_settings_apply_the_suffix() -> None:
    topics = SyncInTopics.from_settings(Settings(sync_in={"topic_suffix": "-t1"}))  # type: ignore[arg-type]
    assert topics.raw["raw.yardi-t1"] == "yardi" and topics.dlq == "sync-in.dlq-t1"
    assert topics.changes("location") == "changes.location-t1"


def test_parse_key() -> None:
    assert parse_key(b"location:P1-101", []) == ("location", "P1-101")
    assert parse_key(b"resident:a:b", [(ENTITY_TYPE, b"resident")]) == ("resident", "a:b")
    for bad in (None, b"", b"location", b"location:", b":x", b"spaceship:1", b"\xff:1"):
        with pytest.raises(RawKeyError):
            parse_key(bad, [])
    with pytest.raises(RawKeyError):
        parse_key(b"location:1", [(ENTITY_TYPE, b"resident")])


def msg(key: bytes | None, value: bytes | None, offset: int = 0, topic: str = "raw.yardi-x") -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, 0, key, value, [(TRACE_ID, b"t-1")])


def decode(data: bytes, topic: str) -> DecodedRecord:
    if data.startswith(b"ok"):
        return DecodedRecord("io.syncflow.yardi.Location", {"id": data.decode()})
    raise DecodeError("not a record")


def transform(source: str, entity_type: str, record: dict[str, Any]) -> CanonicalRecord:
    if record["id"].endswith("bad"):
        raise ValidationError([FieldError("yardi.location.validate.x", "x", None, "is missing")])
    return CanonicalRecord(entity_type, f"loc-{record['id']}", {"entity_id": f"loc-{record['id']}"}, 3, {}, False)


def test_prepare_batch_routes_each_kind_of_bad_input() -> None:
    batch = [msg(b"location:1", b"ok1", 0), msg(b"location:2", b"junk", 1), msg(b"nokey", b"ok3", 2),
             msg(b"location:4", b"ok4bad", 3), msg(b"location:5", b"ok5", 4, topic="raw.other"), msg(b"location:6", None, 5)]
    prepared = prepare_batch(batch, TOPICS, decode, transform, content_hash, max_event_bytes=1_000_000)
    assert [a.index for a in prepared.accepted] == [0]
    accepted = prepared.accepted[0]
    assert accepted.entity.entity_id == "loc-ok1" and accepted.entity.priority == 3 and accepted.entity.trace_id == "t-1"
    assert accepted.entity.source_system == "yardi" and accepted.entity.source_id == "1"
    kinds = {r.index: (type(r.error).__name__, r.raw_key is not None) for r in prepared.rejected}
    assert kinds == {1: ("DecodeError", False), 2: ("RawKeyError", False), 3: ("ValidationError", True),
                     4: ("RawKeyError", False), 5: ("RawKeyError", False)}
    assert list(prepared.raw_docs) == [0, 3]  # a raw document for everything that decoded, by message index
    assert prepared.raw_docs[3].hash == content_hash({"id": "ok4bad"})


def test_change_records_encode_a_change_event_per_version() -> None:
    codec = SingleObjectCodec(SchemaCatalogue.load(Settings().schemas_dir))
    version = NewVersion(7, "service_request", "sr-1", 2, "update", ["status"], {"entity_id": "sr-1", "status": "open"},
                         1, {"location": "loc-1"}, "yardi", "40001", "trace-9", "h", datetime(2026, 1, 1, tzinfo=UTC))
    [record] = change_records([version], codec, lambda t: f"changes.{t}-x")
    assert record.topic == "changes.service_request-x" and record.key == b"sr-1"
    assert header_value(record.headers, PRIORITY) == "1" and header_value(record.headers, TRACE_ID) == "trace-9"
    decoded = codec.decode(record.value)  # type: ignore[arg-type]
    assert decoded.schema_name == CHANGE_EVENT_SCHEMA
    assert decoded.record["event_id"] == "sr-1:2" and decoded.record["snapshot"] == '{"entity_id":"sr-1","status":"open"}'
    assert decoded.record["references"] == {"location": "loc-1"} and decoded.record["change_type"] == "update"


def test_check_fits_finds_nul_and_lone_surrogates_and_bounds_the_event_from_one_json_text() -> None:
    """The column check's text scan and the change event's size bound read one JSON text of
    the entity: a NUL or a lone surrogate anywhere (values, keys, nested, references) is
    named, a big entity is refused by its size, and the size bound covers the snapshot."""
    def record(entity: dict[str, Any], references: dict[str, str] | None = None) -> EntityRecord:
        return EntityRecord("location", "loc-1", {"entity_id": "loc-1", **entity}, "h", "yardi", "1",
                            references=references or {})

    check_fits(record({"name": "fine", "when": datetime(2026, 1, 1, tzinfo=UTC), "n": 2**70}), 1_000_000)
    for bad, field in (({"name": "a\x00b"}, "name"), ({"notes": {"x": "\ud800"}}, "notes.x"),
                       ({"tags": ["ok", "\x00"]}, "tags[1]"), ({}, "references.location")):
        refs = {"location": "\x00"} if field.startswith("references") else None
        with pytest.raises(ValidationError) as caught:
            check_fits(record(bad, refs), 1_000_000)
        assert field in [e.field for e in caught.value.errors]
    big = record({"notes": "x" * 5000})
    assert event_size_bound(big, len(entity_json(big.entity) or b"")) > 5000
    with pytest.raises(TooLargeError):
        check_fits(big, 4000)
