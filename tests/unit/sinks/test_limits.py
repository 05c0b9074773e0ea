"""The column checks sync-in runs before the database: derived from the table models, each
problem named by its field."""

from __future__ import annotations

from typing import Any

import pytest

from syncflow.sinks.common_db.limits import record_problems
from syncflow.sinks.common_db.models import Location, Resident
from syncflow.model import EntityRecord


def record(entity_type: str = "location", **entity: Any) -> EntityRecord:
    fields = {"entity_id": "loc-1", "name": "Maple", "city": "Austin", **entity}
    return EntityRecord(entity_type, "loc-1", fields, "hash", "yardi", "mapl01", trace_id="t-1")


def fields(r: EntityRecord) -> list[str]:
    return [p.field for p in record_problems(r)]


def test_a_valid_record_has_no_problems() -> None:
    assert record_problems(record(residential={"bedrooms": 2, "bathrooms": 1.5, "market_rent": "1450.00"})) == []


def test_limits_come_from_the_models() -> None:
    city = Location.__table__.c.city.type.length
    assert fields(record(city="c" * city)) == []
    [problem] = record_problems(record(city="c" * (city + 1)))
    assert problem.field == "city" and f"{city + 1} characters" in problem.reason and problem.rule == "column-fits"
    first = Resident.__table__.c.first_name.type.length
    assert fields(record("resident", first_name="f" * (first + 1))) == ["first_name"]


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "ok\udfff"])
def test_nul_and_lone_surrogates_are_named_wherever_they_sit(text: str) -> None:
    assert fields(record(name=text)) == ["name"]
    assert fields(record(notes={"inner": [text]})) == ["notes.inner[0]"]  # a snapshot-only field
    assert fields(record(extra={text: 1})) == [f"extra.{text}"]  # a key


def test_numbers_out_of_their_column_range() -> None:
    assert fields(record(residential={"bedrooms": 2**31})) == ["residential.bedrooms"]
    assert fields(record(residential={"bathrooms": 1000})) == ["residential.bathrooms"]  # Numeric(4, 1)
    assert fields(record(residential={"market_rent": "NaN"})) == ["residential.market_rent"]
    assert fields(record(residential={"bedrooms": -(2**31) + 1})) == []


def test_values_that_do_not_coerce_and_identities_too_long() -> None:
    assert fields(record(source_updated_at="yesterday")) == ["source_updated_at"]
    long_id = EntityRecord("location", "l" * 101, {"name": "x"}, "h", "yardi", "s" * 201, trace_id="t" * 101)
    assert fields(long_id) == ["entity_id", "source_id", "trace_id"]
    child = EntityRecord("resident", "res-1", {"location_id": "p" * 101}, "h", "yardi", "r1")
    assert fields(child) == ["location_id"]
    referenced = EntityRecord("resident", "res-1", {}, "h", "yardi", "r1", references={"location": "p" * 101})
    assert fields(referenced) == ["location_id"]
