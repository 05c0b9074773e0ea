"""Both wire formats: round trips, headers, schema evolution, and typed errors for bad
bytes and bad records. The registry format runs against confluent-kafka's in-memory
registry here; tests/integration/streams/test_registry.py runs it against the real one."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from fastavro.utils import generate_many

from syncflow.errors import DecodeError, EncodeError, SchemaMismatchError, UnknownSchemaError
from syncflow.streams.avro import (
    AvroCodec,
    DecodedRecord,
    RegistryCodec,
    SingleObjectCodec,
    codec_for,
    registry_client,
)
from syncflow.streams.schemas import SchemaCatalogue
from syncflow.settings import Settings

CHANGE_EVENT = "io.syncflow.canonical.ChangeEvent"
LOCATION = "io.syncflow.canonical.Location"
RESIDENT = "io.syncflow.canonical.Resident"
NOW = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=timezone.utc)


def change_event(**overrides: object) -> dict:
    event = {
        "event_id": "loc-1:3",
        "entity_type": "location",
        "entity_id": "loc-1",
        "version": 3,
        "change_type": "update",
        "origin_source": "yardi",
        "origin_source_id": "P1-101",
        "priority": 2,
        "changed_fields": ["name", "status"],
        "snapshot": '{"entity_id": "loc-1"}',
        "references": {"location": "loc-0"},
        "occurred_at": NOW,
        "trace_id": "t-1",
    }
    event.update(overrides)
    return event


def location() -> dict:
    return {
        "entity_id": "loc-1",
        "location_type": "unit",
        "property_code": "P1",
        "unit_code": "101",
        "parent_location_id": "loc-0",
        "name": "Unit 101",
        "residential": {
            "bedrooms": 2,
            "bathrooms": 1.5,
            "square_feet": 900,
            "market_rent": Decimal("1875.50"),
            "occupancy_status": "vacant",
        },
        "source_system": "yardi",
        "source_id": "P1-101",
        "source_updated_at": NOW,
    }


# Both formats, each as a factory taking a catalogue; the registry ones share one client so
# a second codec instance (another process, in effect) can read what the first wrote.
CodecFactory = Callable[[SchemaCatalogue], AvroCodec]


@pytest.fixture(params=["single-object", "registry"])
def make_codec(request: pytest.FixtureRequest) -> CodecFactory:
    if request.param == "single-object":
        return SingleObjectCodec
    client = registry_client("mock://")
    return lambda catalogue: RegistryCodec(catalogue, client)


def test_round_trip_keeps_logical_types(make_codec: CodecFactory, repo_catalogue: SchemaCatalogue) -> None:
    codec = make_codec(repo_catalogue)
    decoded = codec.decode(codec.encode(LOCATION, location(), topic="changes.location"), topic="changes.location")
    assert decoded.schema_name == LOCATION
    assert decoded.record["residential"]["market_rent"] == Decimal("1875.50")
    assert decoded.record["source_updated_at"] == NOW
    assert decoded.record["country"] == "US"  # filled from the default
    resident = {"entity_id": "r", "first_name": "A", "last_name": "B", "move_in_date": date(2025, 1, 31),
                "source_system": "yardi", "source_id": "9"}
    assert codec.decode(codec.encode(RESIDENT, resident)).record["move_in_date"] == date(2025, 1, 31)


def test_single_object_header(repo_catalogue: SchemaCatalogue) -> None:
    data = SingleObjectCodec(repo_catalogue).encode(CHANGE_EVENT, change_event())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == repo_catalogue.get(CHANGE_EVENT).fingerprint


def test_registry_header_and_subjects(repo_catalogue: SchemaCatalogue) -> None:
    client = registry_client("mock://")
    codec = RegistryCodec(repo_catalogue, client)
    data = codec.encode(CHANGE_EVENT, change_event(), topic="changes.location")
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == codec.schema_id(CHANGE_EVENT, "changes.location")
    codec.encode(LOCATION, location())
    subjects = set(client.get_subjects())
    assert f"changes.location-{CHANGE_EVENT}" in subjects  # TopicRecordNameStrategy
    assert LOCATION in subjects  # RecordNameStrategy without a topic
    codec.encode(CHANGE_EVENT, change_event(), topic="changes.location")
    assert client.get_versions(f"changes.location-{CHANGE_EVENT}") == [1]


def test_registry_decode_fetches_unknown_ids_once(repo_catalogue: SchemaCatalogue) -> None:
    client = registry_client("mock://")
    data = RegistryCodec(repo_catalogue, client).encode(CHANGE_EVENT, change_event(), topic="t")
    calls: list[int] = []
    original = client.get_schema

    def counting_get_schema(schema_id: int, *args: object, **kwargs: object):
        calls.append(schema_id)
        return original(schema_id, *args, **kwargs)

    client.get_schema = counting_get_schema  # observe the real client's traffic
    reader = RegistryCodec(repo_catalogue, client)
    for _ in range(3):
        assert reader.decode(data).record == change_event()
    assert calls == [struct.unpack(">I", data[1:5])[0]]


# -- schema evolution --------------------------------------------------------------------
V1 = {
    "type": "record",
    "name": "io.test.Thing",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "legacy", "type": ["null", "string"], "default": None},
    ],
}
V2_ADDED = {**V1, "fields": V1["fields"] + [{"name": "colour", "type": "string", "default": "blue"}]}
V2_REMOVED = {**V1, "fields": [f for f in V1["fields"] if f["name"] != "legacy"]}
V2_INCOMPATIBLE = {**V1, "fields": [{"name": "id", "type": "string"}, {"name": "count", "type": "string"},
                                    {"name": "size", "type": "int"}]}


def decode_across(make_codec: CodecFactory, catalogue_of, writer: list[dict], reader: list[dict],
                  reader_history: list[dict], record: dict) -> DecodedRecord:
    """Encode with a catalogue holding `writer`, decode with one holding `reader`."""
    data = make_codec(catalogue_of(writer)).encode("io.test.Thing", record)
    return make_codec(catalogue_of(reader, reader_history)).decode(data)


def test_reader_with_an_added_field_reads_old_data(make_codec: CodecFactory, catalogue_of) -> None:
    decoded = decode_across(make_codec, catalogue_of, [V1], [V2_ADDED], [V1], {"id": "a", "count": 1, "legacy": "x"})
    assert decoded.record == {"id": "a", "count": 1, "legacy": "x", "colour": "blue"}


def test_reader_without_a_removed_field_reads_new_data(make_codec: CodecFactory, catalogue_of) -> None:
    # single-object readers must know the newer writer schema by fingerprint (history/);
    # registry readers fetch it from the registry.
    decoded = decode_across(make_codec, catalogue_of, [V2_ADDED], [V1], [V2_ADDED],
                            {"id": "a", "count": 1, "colour": "red"})
    assert decoded.record == {"id": "a", "count": 1, "legacy": None}


def test_a_field_removed_by_the_writer_is_read_as_its_default(make_codec: CodecFactory, catalogue_of) -> None:
    decoded = decode_across(make_codec, catalogue_of, [V2_REMOVED], [V1], [V2_REMOVED], {"id": "a", "count": 7})
    assert decoded.record == {"id": "a", "count": 7, "legacy": None}


def test_incompatible_reader_is_a_schema_mismatch(make_codec: CodecFactory, catalogue_of) -> None:
    with pytest.raises(SchemaMismatchError, match="io.test.Thing"):
        decode_across(make_codec, catalogue_of, [V1], [V2_INCOMPATIBLE], [V1], {"id": "a", "count": 1})


def test_reader_argument_selects_another_reader_schema(make_codec: CodecFactory, catalogue_of) -> None:
    aliased = {**V2_ADDED, "name": "io.test.Renamed", "aliases": ["io.test.Thing"]}
    codec = make_codec(catalogue_of([V1, aliased]))
    data = codec.encode("io.test.Thing", {"id": "a", "count": 1})
    assert codec.decode(data, reader="io.test.Renamed").record["colour"] == "blue"
    assert codec.decode(data).record == {"id": "a", "count": 1, "legacy": None}
    with pytest.raises(UnknownSchemaError, match="io.test.Nowhere"):
        codec.decode(data, reader="io.test.Nowhere")


def test_reader_of_another_record_type_is_a_schema_mismatch(make_codec: CodecFactory, repo_catalogue) -> None:
    codec = make_codec(repo_catalogue)
    data = codec.encode(CHANGE_EVENT, change_event())
    with pytest.raises(SchemaMismatchError):
        codec.decode(data, reader=LOCATION)


# -- bad bytes ---------------------------------------------------------------------------
def test_bad_bytes_are_typed_errors(make_codec: CodecFactory, repo_catalogue: SchemaCatalogue) -> None:
    codec = make_codec(repo_catalogue)
    good = codec.encode(CHANGE_EVENT, change_event())
    header = 10 if isinstance(codec, SingleObjectCodec) else 5
    cases = {
        b"": "shorter than",
        b"\x00": "shorter than",
        b"garbage, not avro at all": "not ",
        good[:header]: "truncated",
        good[: len(good) - 5]: "truncated",
        good + b"\x00\x01": "2 unread byte",
    }
    for data, message in cases.items():
        with pytest.raises(DecodeError, match=message):
            codec.decode(data, topic="raw.test")
    with pytest.raises(DecodeError, match="expected bytes"):
        codec.decode("text", topic="raw.test")  # type: ignore[arg-type]


def test_corrupt_body_is_a_decode_error_with_its_cause(make_codec: CodecFactory, repo_catalogue) -> None:
    codec = make_codec(repo_catalogue)
    good = codec.encode(CHANGE_EVENT, change_event())
    header = 10 if isinstance(codec, SingleObjectCodec) else 5
    corrupt = good[:header] + b"\xff" * (len(good) - header)
    with pytest.raises(DecodeError) as info:
        codec.decode(corrupt)
    assert not isinstance(info.value, UnknownSchemaError)
    assert info.value.__cause__ is not None or "unread" in str(info.value)


def test_unknown_fingerprint_is_an_unknown_schema(repo_catalogue: SchemaCatalogue) -> None:
    data = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + b"\x02"
    with pytest.raises(UnknownSchemaError, match="0123456789abcdef"):
        SingleObjectCodec(repo_catalogue).decode(data)


def test_unknown_registry_id_is_an_unknown_schema(repo_catalogue: SchemaCatalogue) -> None:
    codec = RegistryCodec(repo_catalogue, registry_client("mock://"))
    with pytest.raises(UnknownSchemaError, match="schema id 4242") as info:
        codec.decode(b"\x00" + struct.pack(">I", 4242) + b"\x02")
    assert info.value.__cause__ is not None


def test_formats_do_not_read_each_other(repo_catalogue: SchemaCatalogue) -> None:
    single = SingleObjectCodec(repo_catalogue)
    registry = RegistryCodec(repo_catalogue, registry_client("mock://"))
    with pytest.raises(DecodeError, match="magic byte 0xc3"):
        registry.decode(single.encode(CHANGE_EVENT, change_event()))
    with pytest.raises(DecodeError, match="not Avro single-object"):
        single.decode(registry.encode(CHANGE_EVENT, change_event()))


# -- bad records -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"version": "3"}, "version"),
        ({"version": 2.5}, "version"),  # fastavro alone would truncate this silently
        ({"version": 2**40}, "version"),  # does not fit an Avro int
        ({"change_type": "rename"}, "change_type"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"changed_fields": "name"}, "changed_fields"),
        ({"entity_id": None}, "entity_id"),
        ({"colour": "blue"}, "colour"),  # not a field of the schema
    ],
)
def test_records_that_do_not_fit_are_encode_errors_naming_the_field(
    make_codec: CodecFactory, repo_catalogue: SchemaCatalogue, overrides: dict, field: str
) -> None:
    with pytest.raises(EncodeError, match=field):
        make_codec(repo_catalogue).encode(CHANGE_EVENT, change_event(**overrides), topic="t")


@pytest.mark.parametrize("rent", [Decimal("1.234"), Decimal("12345678901234.56")])
def test_decimals_that_break_scale_or_precision_are_encode_errors(
    make_codec: CodecFactory, repo_catalogue: SchemaCatalogue, rent: Decimal
) -> None:
    record = location()
    record["residential"]["market_rent"] = rent
    with pytest.raises(EncodeError, match=r"residential\.market_rent="):
        make_codec(repo_catalogue).encode(LOCATION, record)


def test_missing_required_field_is_an_encode_error(make_codec: CodecFactory, repo_catalogue) -> None:
    event = change_event()
    del event["snapshot"]
    with pytest.raises(EncodeError, match="snapshot"):
        make_codec(repo_catalogue).encode(CHANGE_EVENT, event)


def test_unknown_schema_name_or_non_dict_is_an_encode_error(make_codec: CodecFactory, repo_catalogue) -> None:
    codec = make_codec(repo_catalogue)
    with pytest.raises(EncodeError, match="io.nowhere.Thing"):
        codec.encode("io.nowhere.Thing", {})
    with pytest.raises(EncodeError, match="expected a dict"):
        codec.encode(CHANGE_EVENT, [1, 2])  # type: ignore[arg-type]


# -- choice of format and speed ----------------------------------------------------------
def test_codec_for_follows_the_settings() -> None:
    plain = codec_for(Settings(schema_registry_url=None))
    assert plain.encode(CHANGE_EVENT, change_event())[:2] == b"\xc3\x01"  # single-object without a registry
    codec = codec_for(Settings(schema_registry_url="mock://"))
    assert codec.encode(CHANGE_EVENT, change_event())[:1] == b"\x00"  # Confluent framing with one
    assert codec.decode(codec.encode(CHANGE_EVENT, change_event())).schema_name == CHANGE_EVENT


def test_one_codec_reads_both_framings_told_apart_by_their_first_bytes() -> None:
    codec = codec_for(Settings(schema_registry_url="mock://both-framings"))
    single = codec_for(Settings(schema_registry_url=None)).encode(CHANGE_EVENT, change_event())
    confluent = codec.encode(CHANGE_EVENT, change_event())
    assert single[:2] == b"\xc3\x01" and confluent[:1] == b"\x00"
    assert codec.decode(single).record == codec.decode(confluent).record


def test_confluent_framing_without_a_registry_is_refused_saying_so() -> None:
    confluent = codec_for(Settings(schema_registry_url="mock://no-registry-reader")).encode(CHANGE_EVENT, change_event())
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        codec_for(Settings(schema_registry_url=None)).decode(confluent)


def test_decoding_resolves_each_writer_schema_once(make_codec: CodecFactory, repo_catalogue: SchemaCatalogue,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps decoding cheap: the writer/reader resolution is planned once per writer
    schema, not per record. (The decode rate itself is a benchmark figure, not a test: a
    wall-clock threshold fails on a loaded machine.)"""
    import syncflow.streams.avro as avro

    codec = make_codec(repo_catalogue)
    payloads = [codec.encode(CHANGE_EVENT, change_event(version=i, event_id=f"loc-1:{i}")) for i in range(1, 101)]
    planned: list[str] = []
    real_plan_for = avro.plan_for

    def counting_plan_for(catalogue, writer, reader):  # type: ignore[no-untyped-def]
        planned.append(writer.name)
        return real_plan_for(catalogue, writer, reader)

    monkeypatch.setattr(avro, "plan_for", counting_plan_for)
    for _ in range(100):
        decoded = [codec.decode(data).record for data in payloads]
    assert [r["event_id"] for r in decoded] == [f"loc-1:{i}" for i in range(1, 101)]
    assert planned == [CHANGE_EVENT]


def test_every_repository_schema_round_trips(make_codec: CodecFactory, repo_catalogue: SchemaCatalogue) -> None:
    """Random records of each schema in avro_schemas/ (canonical and per source) survive
    encode → decode → encode → decode unchanged: no schema there is unusable."""
    codec = make_codec(repo_catalogue)
    for name in repo_catalogue.names():
        for record in generate_many(repo_catalogue.get(name).parsed, 10):
            first = codec.decode(codec.encode(name, record, topic="raw.test"))
            assert first.schema_name == name
            second = codec.decode(codec.encode(name, first.record, topic="raw.test"))
            assert second.record == first.record, name
