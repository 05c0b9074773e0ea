"""Reading source answers: Yardi's in-band errors, pages, cursors and positions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from syncflow.connectors.bulk_import import csv_row_to_record
from syncflow.connectors.insight import parse_feed_page
from syncflow.connectors.lessen360 import last_position
from syncflow.connectors.realpage import local_time, parse_page
from syncflow.connectors.schemas import load_schema
from syncflow.connectors.yardi import parse_result, voyager_time
from syncflow.emulators.sources.yardi import envelope, error_messages
from syncflow.errors import PermanentSourceError, TransientSourceError
from syncflow.settings import REPO_ROOT

OP = "GetResidents"


def test_yardi_empty_error_message_means_no_records() -> None:
    assert parse_result(OP, envelope(OP, error_messages(""))) is None


def test_yardi_invalid_credentials_or_property_are_permanent_others_transient() -> None:
    with pytest.raises(PermanentSourceError, match="Invalid Username/Password"):
        parse_result(OP, envelope(OP, error_messages("Invalid Username/Password")))
    with pytest.raises(PermanentSourceError, match="Invalid property code"):
        parse_result(OP, envelope(OP, error_messages("Invalid property code zz")))
    with pytest.raises(TransientSourceError):
        parse_result(OP, envelope(OP, error_messages("Database is busy")))


def test_yardi_malformed_body_is_a_value_error() -> None:
    body = envelope(OP, ET.Element("Customers"))
    with pytest.raises(ValueError):
        parse_result(OP, body[: len(body) // 2])
    with pytest.raises(ValueError):
        parse_result("GetUnitInformation", body)


def test_yardi_result_content() -> None:
    content = parse_result(OP, envelope(OP, ET.Element("Customers")))
    assert content is not None and content.tag == "Customers"


def test_time_formats_sent_to_sources() -> None:
    assert voyager_time(1767225600000) == "2026-01-01T00:00:00"
    assert local_time(1767225600000, "America/Denver") == "2025-12-31T17:00:00"


def test_pages_and_feeds() -> None:
    assert parse_page(b'{"data": [{"a": 1}], "links": {"next": "http://x?page=2"}}') == ([{"a": 1}], True)
    assert parse_page(b'{"data": [], "links": {"next": null}}') == ([], False)
    with pytest.raises(ValueError):
        parse_page(b'{"data": [')
    assert parse_feed_page(b'{"items": [], "next_cursor": "abc", "has_more": false}') == ([], "abc", False)
    with pytest.raises(ValueError):
        parse_feed_page(json.dumps({"items": []}).encode())


def test_lessen360_position_is_the_greatest_time_then_id() -> None:
    records = [{"workOrderId": "WO-2", "updatedAtMs": 5}, {"workOrderId": "WO-1", "updatedAtMs": 5},
               {"workOrderId": "WO-9", "updatedAtMs": 4}]
    assert last_position("service_request", records, None) == (5, "WO-2")
    assert last_position("service_request", records, (6, "WO-0")) == (6, "WO-0")
    assert last_position("service_request", [], None) is None


def test_csv_row_types_and_nested_columns() -> None:
    schema = load_schema(REPO_ROOT / "avro_schemas", "realpage", "location")
    row = {"locationId": "U1", "locationType": "unit", "propertyCode": "p", "unitNumber": "101", "bedrooms": "2",
           "bathrooms": "1.5", "marketRent": "1200.5", "address.city": "Austin", "address.zip": "",
           "timeZone": "UTC", "lastModifiedDate": "2026-01-01T00:00:00", "isDeleted": "false"}
    record, errors = csv_row_to_record(row, schema)
    assert errors == []
    assert record["bedrooms"] == 2 and record["bathrooms"] == 1.5 and record["isDeleted"] is False
    assert record["address"]["city"] == "Austin" and record["address"]["zip"] is None
    assert record["squareFeet"] is None
    _, errors = csv_row_to_record({**row, "bedrooms": "two", "extra": "x"}, schema)
    assert {e.field for e in errors} == {"bedrooms", "extra"}
