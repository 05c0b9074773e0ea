"""DLQ records without a broker: fields read from headers, filters, value display, the
redrive headers, why a record is parked and the bookkeeping of handled offsets."""

from __future__ import annotations

import json
from pathlib import Path

from syncflow.errors import PermanentTargetError, ValidationError
from syncflow.ops.dead_letter_queue import (
    VALUE_REPLACED,
    AuditLog,
    DlqFilter,
    DlqRecord,
    advance,
    decode_ranges,
    describe_value,
    encode_ranges,
    park_reason,
    redrive_headers,
)
from syncflow.streams.dead_letters import PREFIX, FailureContext, failure_headers
from syncflow.streams.headers import ENTITY_TYPE, REDRIVE_COUNT, TRACE_ID


def record(topic: str = "sync-out.one.dlq", error: Exception | None = None, original: str = "changes.location",
           extra: list[tuple[str, bytes]] | None = None, failed_at: int | None = None) -> DlqRecord:
    ctx = FailureContext(original, 1, 2, 3, "sync-out.one", error or PermanentTargetError("400", 400))
    headers = [(k, v) for k, v in failure_headers(ctx) if not (failed_at and k == PREFIX + "failed.at")]
    if failed_at:
        headers.append((PREFIX + "failed.at", str(failed_at).encode()))
    return DlqRecord(topic, 0, 5, 999, b"k", b"v", headers + (extra or []))


def test_fields_come_from_headers_and_topic_names() -> None:
    r = record()
    assert (r.original_topic, r.category, r.target, r.entity_type, r.redrive_count) == (
        "changes.location", "permanent", "one", "location", 0)
    raw = record("sync-in.dlq", ValidationError([]), original="raw.yardi", extra=[(ENTITY_TYPE, b"resident"), (REDRIVE_COUNT, b"2")])
    assert (raw.target, raw.entity_type, raw.category, raw.redrive_count) == (None, "resident", "validation", 2)


def test_filters() -> None:
    r = record(failed_at=5000)
    assert DlqFilter().matches(r)
    assert DlqFilter(target="one", category="permanent", entity_type="location", since_ms=5000, until_ms=5001).matches(r)
    assert not DlqFilter(target="lessen360").matches(r)
    assert not DlqFilter(category="transient").matches(r)
    assert not DlqFilter(entity_type="resident").matches(r)
    assert not DlqFilter(since_ms=5001).matches(r)
    assert not DlqFilter(until_ms=5000).matches(r)


def test_describe_value_prefers_avro_then_text_then_hex() -> None:
    assert describe_value(b"\xc3\x01x", lambda b: ("io.syncflow.X", {"a": 1})) == ("avro io.syncflow.X", '{\n  "a": 1\n}')

    def not_avro(_: bytes) -> tuple[str, dict]:
        raise ValueError("no")

    assert describe_value(b"hello", not_avro) == ("text", "hello")
    assert describe_value(b"\xff\x00", None) == ("hex", "ff 00")
    assert describe_value(None) == ("null", "")


def test_redrive_headers_drop_failure_headers_and_count_up() -> None:
    r = record(extra=[(TRACE_ID, b"t1"), (REDRIVE_COUNT, b"1")])
    headers = redrive_headers(r)
    assert headers == [(TRACE_ID, b"t1"), (REDRIVE_COUNT, b"2")]


def test_ranges_round_trip() -> None:
    for offsets in [set(), {3}, {3, 4, 5, 9}, {1, 3, 5}, set(range(100, 200)) | {7}]:
        assert decode_ranges(encode_ranges(offsets)) == offsets
    assert encode_ranges({3, 4, 5, 9, 11, 12}) == "3-5,9,11-12"


def test_advance_commits_past_the_handled_prefix_and_remembers_the_rest() -> None:
    assert advance([0, 1, 2, 3], {0, 1, 3}, end=4) == (2, {3})
    assert advance([0, 1, 2], {0, 1, 2}, end=3) == (3, set())
    assert advance([], set(), end=10) == (10, set())
    assert advance([5, 7], {7}, end=8) == (5, {7})  # gaps in offsets (compaction) are fine


def test_audit_log_appends_json_lines(tmp_path: Path) -> None:
    echoed: list[str] = []
    log = AuditLog(tmp_path / "a" / "audit.jsonl", echo=echoed.append)
    log.write({"action": "redriven", "offset": 1})
    log.write({"action": "parked", "offset": 2})
    lines = [json.loads(x) for x in (tmp_path / "a" / "audit.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["redriven", "parked"]
    assert "time" in lines[0] and len(echoed) == 2


def test_park_reasons_in_the_order_an_operator_needs_them() -> None:
    topics = {"changes.location", "raw.yardi"}
    good = record()
    assert park_reason(good, "changes.location", topics, max_redrives=3) is None
    not_utf8 = record(extra=[(REDRIVE_COUNT, b"\xff")])
    assert park_reason(not_utf8, "changes.location", topics, 3) == f"header {REDRIVE_COUNT} is not UTF-8 text"
    assert park_reason(record(extra=[(REDRIVE_COUNT, b"x1")]), "changes.location", topics, 3) == (
        f"header {REDRIVE_COUNT} is not a number: 'x1'")
    assert park_reason(record(extra=[(REDRIVE_COUNT, b"3")]), "changes.location", topics, 3) == "already redriven 3 times"
    assert "points at the original" in str(park_reason(record(extra=[(VALUE_REPLACED, b"pointer")]), "changes.location", topics, 3))
    bare = DlqRecord("sync-in.dlq", 0, 1, 2, b"k", b"v", [(TRACE_ID, b"t")])
    assert park_reason(bare, bare.original_topic, topics, 3) == "no failure headers"
    assert park_reason(good, "raw yardi", topics, 3) == "original.topic 'raw yardi' is not a topic name"
    assert park_reason(good, "changes.gone", topics, 3) == "topic changes.gone does not exist"
    tombstone = DlqRecord(good.topic, 0, 5, 999, b"k", None, good.headers)
    assert park_reason(tombstone, "changes.location", topics, 3) == "no value (a tombstone): nothing to send back"


def test_own_headers_may_be_binary_failure_headers_may_not() -> None:
    assert record(extra=[(TRACE_ID, b"\xff\x00")]).unreadable() is None
    garbled = DlqRecord("sync-in.dlq", 0, 1, 2, b"k", b"v", [(PREFIX + "original.topic", b"raw.\xffyardi")])
    assert garbled.unreadable() == f"header {PREFIX}original.topic is not UTF-8 text"
    assert garbled.summary()["original_topic"] == "raw.\ufffdyardi"  # still listable and showable
