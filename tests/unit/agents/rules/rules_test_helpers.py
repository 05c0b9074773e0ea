"""Small assertions shared by the rules tests."""

from __future__ import annotations

import io
import uuid

import fastavro
import pytest

from syncflow.agents.rules import CanonicalRecord, RulesEngine
from syncflow.agents.rules.schemas import load_canonical_schemas
from syncflow.errors import ValidationError

NAMESPACE = uuid.UUID("85f90197-0035-49eb-9ee0-c773b66aa1c8")
_SCHEMAS = load_canonical_schemas()


def location_id(property_code: str, unit_code: str = "") -> str:
    return "loc-" + str(uuid.uuid5(NAMESPACE, f"location|{property_code}|{unit_code}"))


def source_entity_id(prefix: str, entity_type: str, source: str, source_id: str) -> str:
    return prefix + str(uuid.uuid5(NAMESPACE, f"{entity_type}|{source}|{source_id}"))


def assert_canonical(record: CanonicalRecord) -> None:
    """The entity has exactly its schema's fields and passes the Avro check."""
    schema = _SCHEMAS[record.entity_type]
    assert list(record.entity) == [f.name for f in schema.fields]
    assert schema.matches(record.entity), schema.failing_fields(record.entity)
    assert record.entity["entity_id"] == record.entity_id
    assert record.entity["deleted"] is record.deleted
    assert 1 <= record.priority <= 10
    buffer = io.BytesIO()  # and it really serializes and reads back the same
    fastavro.schemaless_writer(buffer, schema.parsed, record.entity)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, schema.parsed) == record.entity


def failures(engine: RulesEngine, source: str, entity_type: str, record: dict) -> dict[tuple[str, str], str]:
    """{(rule, field): reason} of the ValidationError the record must raise."""
    with pytest.raises(ValidationError) as caught:
        engine.transform(source, entity_type, record)
    return {(e.rule, e.field): e.reason for e in caught.value.errors}
