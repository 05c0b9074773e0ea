"""Input nobody designed for, at the parsing edge: XML with DTDs, JSON nested too deep,
garbage modified times, unbounded error lists."""

from __future__ import annotations

import json
import time

import pytest

from syncflow.connectors.base import latest_modified_ms, load_json
from syncflow.connectors.ingest import ErrorList, json_depth_over, parse_json_records, preview
from syncflow.connectors.lessen360 import last_position
from syncflow.connectors.xml_records import parse_xml
from syncflow.connectors.yardi import parse_result

LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">
]><r>&b;</r>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"""
BARE_DOCTYPE = b"""<?xml version="1.0"?><!DOCTYPE r><r>1</r>"""


@pytest.mark.parametrize("document", [LAUGHS, EXTERNAL, BARE_DOCTYPE])
def test_xml_with_a_dtd_is_refused(document: bytes) -> None:
    with pytest.raises(ValueError, match="DTD or entity declarations is not accepted"):
        parse_xml(document)


def test_yardi_answer_with_a_dtd_is_malformed_not_expanded() -> None:
    with pytest.raises(ValueError, match="DTD"):
        parse_result("GetResidents", LAUGHS)


def test_plain_xml_still_parses() -> None:
    assert parse_xml(b"<r><a>1</a></r>").find("a").text == "1"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not well-formed XML"):
        parse_xml(b"<r>&undeclared;</r>")


def test_json_nested_past_the_parser_is_malformed() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json(b"[" * 100_000 + b"]" * 100_000)


def test_json_depth_limit() -> None:
    assert not json_depth_over([{"a": [1, {"b": 2}]}], 4)
    assert json_depth_over([{"a": [1, {"b": []}]}], 4)
    with pytest.raises(ValueError, match="nested deeper than 3 levels"):
        parse_json_records(json.dumps([{"a": [[1]]}]).encode(), 3)
    assert parse_json_records(b'{"a": 1}', 3) == [{"a": 1}]


def test_error_list_keeps_the_first_and_counts_the_rest() -> None:
    errors = ErrorList(limit=3)
    for i in range(1000):
        errors.add(i, "f", "is required")
    assert [e["index"] for e in errors.listed] == [0, 1, 2] and errors.total == 1000
    assert json.loads(errors.response(400).body)["errors_not_listed"] == 997  # type: ignore[arg-type]


def test_preview_is_short() -> None:
    assert preview("x" * 1000) == "x" * 200 + "…"
    assert preview(list(range(10**5))) == "<list of 100000 items>"
    assert preview({"a": 1}) == "<object of 1 items>" and preview(3) == 3


def test_garbage_modified_times_move_no_cursor() -> None:
    now_ms = int(time.time() * 1000)
    ceiling = now_ms + 3600_000
    records = [{"lastModifiedDate": "2025-12-01T10:00:00", "timeZone": "UTC"},
               {"lastModifiedDate": "9999-12-31T00:00:00", "timeZone": "UTC"},
               {"lastModifiedDate": "2025-12-01T11:00:00", "timeZone": "Mars/Olympus\x00"},
               {"lastModifiedDate": ["a list"], "timeZone": "UTC"}, "not a record", None]
    assert latest_modified_ms("realpage", records, None, ceiling) == 1764583200000  # 2025-12-01T10:00Z


def test_lessen360_position_skips_non_records_and_impossible_times() -> None:
    now_ms = int(time.time() * 1000)
    records = [{"workOrderId": "a", "updatedAtMs": 1_000}, "junk", None, [1, 2],
               {"workOrderId": "b", "updatedAtMs": 10**20}, {"workOrderId": "c", "updatedAtMs": True},
               {"workOrderId": "d", "updatedAtMs": -5}, {"workOrderId": "e", "updatedAtMs": now_ms * 10}]
    assert last_position("service_request", records, None, now_ms) == (1_000, "a")  # type: ignore[arg-type]
