"""The schema catalogue: loading, cross-file references, history versions, fingerprints;
the one reader of `.avsc` files, which the source and canonical schema loaders use too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncflow.errors import ConfigError, UnknownSchemaError
from syncflow.agents.rules.schemas import load_canonical_schemas
from syncflow.connectors.schemas import load_schema
from syncflow.streams.schemas import SchemaCatalogue, read_schema_file

EMPTY_64 = 0xC15D213AA4D7A795


def rabin64(data: bytes) -> int:
    """CRC-64-AVRO as written out in the Avro specification."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY_64 & -(fp & 1))
        table.append(fp)
    fp = EMPTY_64
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_reference_rabin_matches_the_avro_test_vector() -> None:
    assert rabin64(b'"null"') == 7195948357588979594  # share/test/data/schema-tests.txt


def test_repository_schemas_all_load(repo_catalogue: SchemaCatalogue) -> None:
    for name in [
        "io.syncflow.canonical.ChangeEvent",
        "io.syncflow.canonical.Location",
        "io.syncflow.canonical.Resident",
        "io.syncflow.canonical.ServiceRequest",
        "io.syncflow.canonical.Attachment",
    ]:
        assert name in repo_catalogue
    event = repo_catalogue.get("io.syncflow.canonical.ChangeEvent")
    assert {"event_id", "entity_id", "version", "change_type", "snapshot", "occurred_at"} <= event.field_names
    assert event.current
    assert repo_catalogue.by_fingerprint(event.fingerprint) is event


def test_fingerprint_is_little_endian_crc64_of_the_canonical_form(repo_catalogue: SchemaCatalogue) -> None:
    for name in repo_catalogue.names():
        version = repo_catalogue.get(name)
        assert len(version.fingerprint) == 8
        assert version.fingerprint == rabin64(version.canonical_form.encode()).to_bytes(8, "little")


def test_parsing_canonical_form_strips_docs_defaults_and_logical_types(catalogue_of) -> None:
    schema = {
        "type": "record",
        "name": "Thing",
        "namespace": "io.test",
        "doc": "ignored",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "x"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
    version = catalogue_of([schema]).get("io.test.Thing")
    assert version.canonical_form == (
        '{"name":"io.test.Thing","type":"record","fields":'
        '[{"name":"at","type":"long"},{"name":"note","type":["null","string"]}]}'
    )


ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "io.test.shared",
    "fields": [{"name": "street", "type": "string"}],
}
# "A..." sorts before "Z...": the referencing file is read first.
UNIT = {
    "type": "record",
    "name": "AUnit",
    "namespace": "io.test.src",
    "fields": [
        {"name": "home", "type": "io.test.shared.Address"},
        {"name": "mail", "type": ["null", "io.test.shared.Address"], "default": None},
        {"name": "kind", "type": "io.test.shared.Kind"},
    ],
}
HOLDER = {
    "type": "record",
    "name": "ZHolder",
    "namespace": "io.test.shared",
    "fields": [
        {"name": "address", "type": ADDRESS},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
    ],
}


def test_references_across_files_are_inlined_at_first_use(write_schemas) -> None:
    root = write_schemas("refs", {"src/AUnit.avsc": UNIT, "shared/ZHolder.avsc": HOLDER})
    catalogue = SchemaCatalogue.load(root)
    unit = catalogue.get("io.test.src.AUnit")
    fields = unit.schema["fields"]
    assert fields[0]["type"]["name"] == "io.test.shared.Address"  # the definition, inlined
    assert fields[1]["type"] == ["null", "io.test.shared.Address"]  # later uses stay names
    assert fields[2]["type"]["symbols"] == ["a", "b"]  # a type nested in another file's record
    assert json.loads(unit.to_json()) == unit.schema
    assert "io.test.shared.ZHolder" in catalogue


def test_unknown_reference_is_a_config_error_naming_the_type(write_schemas) -> None:
    root = write_schemas("missing", {"AUnit.avsc": UNIT})
    with pytest.raises(ConfigError, match="io.test.shared.Address"):
        SchemaCatalogue.load(root)


def test_ambiguous_definitions_fail_only_when_referenced(write_schemas) -> None:
    other = {**ADDRESS, "fields": [{"name": "line", "type": "string"}]}
    holder2 = {"type": "record", "name": "Other", "namespace": "io.test.x", "fields": [{"name": "a", "type": other}]}
    quiet = write_schemas("quiet", {"ZHolder.avsc": HOLDER, "Other.avsc": holder2})
    assert len(SchemaCatalogue.load(quiet)) == 2
    loud = write_schemas("loud", {"ZHolder.avsc": HOLDER, "Other.avsc": holder2, "AUnit.avsc": UNIT})
    with pytest.raises(ConfigError, match="defined differently"):
        SchemaCatalogue.load(loud)


def test_history_versions_are_known_by_fingerprint_but_not_current(catalogue_of) -> None:
    v1 = {"type": "record", "name": "io.test.Thing", "fields": [{"name": "a", "type": "string"}]}
    v2 = {**v1, "fields": v1["fields"] + [{"name": "b", "type": "int", "default": 0}]}
    catalogue = catalogue_of([v2], history=[v1, v2])
    current = catalogue.get("io.test.Thing")
    assert current.field_names == {"a", "b"}
    versions = catalogue.versions("io.test.Thing")
    assert len(versions) == 2  # the copy of v2 in history/ is not a second version
    old = next(v for v in versions if not v.current)
    assert old.field_names == {"a"}
    assert catalogue.by_fingerprint(old.fingerprint) is old
    assert old.fingerprint != current.fingerprint


def test_same_name_twice_is_refused(catalogue_of) -> None:
    v1 = {"type": "record", "name": "io.test.Thing", "fields": [{"name": "a", "type": "string"}]}
    v2 = {"type": "record", "name": "io.test.Thing", "fields": [{"name": "b", "type": "string"}]}
    with pytest.raises(ConfigError, match="io.test.Thing is defined twice"):
        catalogue_of([v1, v2])


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read schema file"),
        ("[]", "must hold one named type"),
        (json.dumps({"type": "record", "name": "X", "fields": [{"name": "a", "type": "strng"}]}), "unknown named type"),
        (json.dumps({"type": "record", "name": "X", "fields": [{"name": "a"}]}), "record X needs a list of fields"),
    ],
)
def test_bad_schema_files_are_config_errors(write_schemas, content: str, message: str) -> None:
    root = write_schemas("bad", {"Bad.avsc": content})
    with pytest.raises(ConfigError, match=message):
        SchemaCatalogue.load(root)


def test_every_schema_loader_reads_files_through_read_schema_file(tmp_path: Path) -> None:
    (tmp_path / "sources" / "yardi").mkdir(parents=True)
    (tmp_path / "sources" / "yardi" / "Location.avsc").write_text("[]")
    with pytest.raises(ConfigError, match="must hold one named type"):
        read_schema_file(tmp_path / "sources" / "yardi" / "Location.avsc")
    with pytest.raises(ConfigError, match="must hold one named type"):  # the sources' native schemas
        load_schema(tmp_path, "yardi", "location")
    with pytest.raises(ConfigError, match="cannot read schema file"):  # the rules' canonical schemas
        load_canonical_schemas(tmp_path / "canonical")


def test_lookups_of_unknown_names_and_fingerprints_are_typed(repo_catalogue: SchemaCatalogue) -> None:
    with pytest.raises(UnknownSchemaError, match="io.nowhere.Thing"):
        repo_catalogue.get("io.nowhere.Thing")
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        repo_catalogue.by_fingerprint(bytes([1, 2, 3, 4, 5, 6, 7, 8]))
    assert repo_catalogue.find("io.nowhere.Thing") is None
