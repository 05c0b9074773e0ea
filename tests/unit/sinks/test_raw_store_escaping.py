"""Raw payload keys FerretDB refuses are escaped reversibly; values become BSON-safe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from syncflow.sinks.raw_store import escape_key, from_document, to_document, unescape_key


@pytest.mark.parametrize(
    "key",
    ["plain", "a.b", "$set", "a$b", "..", "$", "\uff0e", "a.\uff0eb", "\uff04x", "\uff3cx.y", "$.\uff04", "\uff3b\uff3d", ""],
)
def test_escape_round_trips_and_leaves_no_forbidden_key(key: str) -> None:
    escaped = escape_key(key)
    assert "." not in escaped and not escaped.startswith("$")
    assert unescape_key(escaped) == key


def test_distinct_keys_stay_distinct() -> None:
    keys = ["a.b", "a\uff0eb", "a\uff3c.b", "$a", "\uff04a"]
    assert len({escape_key(k) for k in keys}) == len(keys)


def test_document_round_trip_with_nested_arrays_and_odd_values() -> None:
    record = {"unit.code": "U1", "$meta": {"x.y": [1, [2, 3]]}, "rent": Decimal("10.50"), "day": date(2024, 1, 2),
              "at": datetime(2024, 1, 2, 3, 4, tzinfo=UTC), "blob": b"\x00\x01", "nan": float("nan")}
    doc = to_document(record)
    assert doc["unit\uff0ecode"] == "U1" and doc["rent"] == "10.50" and doc["day"] == "2024-01-02" and doc["nan"] == "nan"
    back = from_document(doc)
    assert back["unit.code"] == "U1" and back["$meta"] == {"x.y": [1, [2, 3]]} and back["blob"] == b"\x00\x01"
