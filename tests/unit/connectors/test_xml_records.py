"""Yardi XML <-> records, driven by the schema."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from syncflow.connectors.schemas import load_schema
from syncflow.connectors.xml_records import element_to_record, record_to_element
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import apply_changes, generate_world
from syncflow.errors import ValidationError
from syncflow.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "avro_schemas"


@pytest.mark.parametrize("entity_type", ["location", "resident", "service_request"])
def test_every_yardi_record_round_trips_through_xml(entity_type: str) -> None:
    world = generate_world(4, 60, invalid_rate=0.2)
    apply_changes(world, "yardi", 30)
    schema = load_schema(SCHEMAS, "yardi", entity_type)
    for e in world.of("yardi", entity_type):
        record = render(e)
        text = ET.tostring(record_to_element("Record", record, schema))
        assert element_to_record(ET.fromstring(text), schema) == record


def test_unreadable_values_and_missing_required_elements_are_field_errors() -> None:
    schema = load_schema(SCHEMAS, "yardi", "location")
    elem = ET.fromstring("<Location><LocationId>x</LocationId><Bedrooms>two</Bedrooms>"
                         "<IsDeleted>perhaps</IsDeleted><Colour>red</Colour></Location>")
    with pytest.raises(ValidationError) as info:
        element_to_record(elem, schema)
    fields = {e.field for e in info.value.errors}
    assert fields == {"Colour", "RecordType", "PropertyCode", "UpdateDate", "Bedrooms", "IsDeleted"}


def test_namespaced_elements_are_read_by_local_name() -> None:
    schema = load_schema(SCHEMAS, "yardi", "service_request")
    elem = ET.fromstring('<y:ServiceRequest xmlns:y="urn:y"><y:ServiceRequestId>7</y:ServiceRequestId>'
                         "<y:PropertyCode>p1</y:PropertyCode><y:UpdateDate>2026-01-01T00:00:00</y:UpdateDate>"
                         "</y:ServiceRequest>")
    record = element_to_record(elem, schema)
    assert record["ServiceRequestId"] == "7" and record["StatusHistory"] == [] and record["Category"] is None
