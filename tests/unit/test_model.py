"""The change event contract, written once (syncflow/model.py): what sync-in writes for a
committed version is what sync-out reads back, through the real Avro codec."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from syncflow.model import CHANGE_EVENT_SCHEMA, ChangeEvent, NewVersion, epoch_ms, load_snapshot
from syncflow.settings import Settings
from syncflow.streams.avro import SingleObjectCodec
from syncflow.streams.schemas import SchemaCatalogue

COMMITTED = datetime(2026, 1, 1, 12, 0, 0, 123_987, tzinfo=UTC)


def version() -> NewVersion:
    return NewVersion(7, "service_request", "sr-1", 2, "update", ["status"], {"entity_id": "sr-1", "status": "open"},
                      1, {"location": "loc-1", "resident": ""}, "yardi", "40001", "trace-9", "h", COMMITTED)


def test_what_sync_in_writes_sync_out_reads() -> None:
    codec = SingleObjectCodec(SchemaCatalogue.load(Settings().schemas_dir))
    written = ChangeEvent.from_version(version())
    decoded = codec.decode(codec.encode(CHANGE_EVENT_SCHEMA, written.to_record()))
    assert decoded.record["event_id"] == "sr-1:2" and decoded.record["changed_fields"] == ["status"]
    assert decoded.record["occurred_at"] == datetime(2026, 1, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    read = ChangeEvent.from_record(decoded.record)
    assert read.occurred_at_ms == epoch_ms(COMMITTED) == written.occurred_at_ms
    assert (read.entity_type, read.entity_id, read.version, read.change_type) == ("service_request", "sr-1", 2, "update")
    assert (read.origin_source, read.origin_source_id, read.priority, read.trace_id) == ("yardi", "40001", 1, "trace-9")
    assert read.snapshot == {"entity_id": "sr-1", "status": "open"} and read.changed_fields == ("status",)
    assert read.references == {"location": "loc-1"} and written.references == {"location": "loc-1", "resident": ""}
    assert read.resend == ""


def test_a_forced_resend_carries_its_id_in_the_event_id() -> None:
    record = ChangeEvent.from_version(version(), resend="heal-1").to_record()
    assert record["event_id"] == "sr-1:2/heal-1"
    assert ChangeEvent.from_record(record).resend == "heal-1"


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [1.5, "x", null, true], "c": {"d": "é"}}',
    '{"n": 123456789012345678901234567890}',  # beyond 64 bits: an int, not a float
    '{"n": -9223372036854775809, "m": 18446744073709551616}',
    '{"f": NaN, "g": Infinity}',  # other producers' JSON: the standard parser takes it
    '{"s": "\\ud800"}',  # a lone surrogate escape
    '{"a": 1, "a": 2}',
    '{"phone": "12345678901234567890"}',
])
def test_load_snapshot_reads_exactly_what_the_standard_parser_reads(text: str) -> None:
    got, want = load_snapshot(text), json.loads(text)
    assert repr(got) == repr(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
