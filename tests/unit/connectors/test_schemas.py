"""Source schema helpers: field-level shape errors, ids, modified times in each source's format."""

from __future__ import annotations

import pytest

from syncflow.connectors.schemas import SOURCE_ENTITIES, check_record, load_schema, modified_ms_of, schema_name, with_defaults
from syncflow.errors import UnknownEntityError
from syncflow.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "avro_schemas"


def test_every_source_entity_has_a_schema_with_the_documented_full_name() -> None:
    for source, entities in SOURCE_ENTITIES.items():
        for entity_type in entities:
            schema = load_schema(SCHEMAS, source, entity_type)
            assert f"{schema['namespace']}.{schema['name']}" == schema_name(source, entity_type)
    assert schema_name("yardi", "service_request") == "io.syncflow.yardi.ServiceRequest"
    with pytest.raises(UnknownEntityError):
        schema_name("lessen360", "resident")


def test_the_four_entities_are_covered() -> None:
    assert {e for entities in SOURCE_ENTITIES.values() for e in entities} == {
        "location", "resident", "service_request", "attachment"}


def test_check_record_names_each_bad_field() -> None:
    schema = load_schema(SCHEMAS, "yardi", "resident")
    record = {"Identification": {"IDValue": 5}, "PropertyCode": None, "Name": {"FirstName": "A"},
              "Phone": [{"PhoneNumber": 1}], "UpdateDate": "2026-01-01T00:00:00", "Shoe": 42}
    errors = {(e.field, e.reason) for e in check_record(schema, record)}
    assert errors == {
        ("Identification.IDValue", "expected string, got int"),
        ("PropertyCode", "is required"),
        ("Phone[0].PhoneNumber", "expected string, got int"),
        ("Shoe", "is not a field of Resident"),
    }


def test_check_record_accepts_omitted_fields_with_defaults_and_rejects_non_records() -> None:
    schema = load_schema(SCHEMAS, "lessen360", "attachment")
    minimal = {"attachmentId": "a1", "workOrderId": "WO-1", "updatedAtMs": 1}
    assert check_record(schema, minimal) == []
    assert with_defaults(schema, minimal)["archived"] is False
    assert [e.reason for e in check_record(schema, ["not", "a", "record"])] == ["expected a Attachment record"]
    assert check_record(schema, {**minimal, "updatedAtMs": True})[0].field == "updatedAtMs"


def test_modified_times_in_each_source_format() -> None:
    assert modified_ms_of("yardi", {"UpdateDate": "2026-01-01T00:00:01"}) == 1767225601000
    # RealPage times are local to the property: 18:00 in Chicago (UTC-6 in winter) is 00:00 UTC
    assert modified_ms_of("realpage", {"lastModifiedDate": "2025-12-31T18:00:00",
                                       "timeZone": "America/Chicago"}) == 1767225600000
    assert modified_ms_of("insight", {"updated_at": "2026-01-01T01:00:00+01:00"}) == 1767225600000
    assert modified_ms_of("lessen360", {"updatedAtMs": 1767225600000}) == 1767225600000
    with pytest.raises(ValueError):
        modified_ms_of("yardi", {"UpdateDate": "01/01/2026"})
    with pytest.raises(ValueError):
        modified_ms_of("insight", {"updated_at": "2026-01-01T00:00:00"})
