"""Version planning without a database: hashes, numbering, change types, changed fields,
JSON-safe snapshots; and canonical values -> typed columns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from syncflow.model import EntityRecord, snapshot_json
from syncflow.sinks.common_db.rows import entity_row, parent_ids, residential_row, to_date, to_datetime
from syncflow.sinks.common_db.versioning import (
    EntityHead,
    MasterState,
    changed_fields,
    json_safe,
    plan_versions,
)


def rec(entity_id: str, h: str, source: str = "yardi", deleted: bool = False, **fields: object) -> EntityRecord:
    return EntityRecord("location", entity_id, {"entity_id": entity_id, **fields, "deleted": deleted}, h, source, "s1", deleted=deleted)


def test_json_safe_converts_what_json_cannot_hold() -> None:
    value = {"at": datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), "naive": datetime(2024, 1, 1),
             "d": date(2024, 2, 3), "m": Decimal("1.50"), "b": b"\x01", "nan": float("nan"), "l": (1, 2)}
    assert json_safe(value) == {"at": "2024-01-01T10:00:00Z", "naive": "2024-01-01T00:00:00Z", "d": "2024-02-03",
                                "m": "1.50", "b": "AQ==", "nan": "nan", "l": [1, 2]}
    assert snapshot_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_changed_fields() -> None:
    assert changed_fields(None, {"b": 1, "a": 2}) == ["a", "b"]
    assert changed_fields({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 3, "d": 4}) == ["b", "c", "d"]


def test_plan_numbers_versions_per_entity_and_skips_unchanged_hashes() -> None:
    items = [rec("e1", "h1", name="a"), rec("e1", "h1", name="a"), rec("e2", "x"), rec("e1", "h2", name="b"),
             rec("e1", "h3", name="b", deleted=True)]
    planned = plan_versions(items, {}, {})
    assert [(p.item_index, p.entity_id, p.version_number, p.change_type) for p in planned] == [
        (0, "e1", 1, "create"), (2, "e2", 1, "create"), (3, "e1", 2, "update"), (4, "e1", 3, "delete")]
    assert planned[2].changed_fields == ["name"] and planned[3].changed_fields == ["deleted"]


def test_plan_continues_from_the_head_and_compares_with_its_source_only() -> None:
    heads = {("location", "e1"): EntityHead(4, False, {"entity_id": "e1", "name": "a", "deleted": False})}
    masters = {("location", "e1", "yardi"): MasterState("h1")}
    planned = plan_versions([rec("e1", "h1", name="a"), rec("e1", "h1", source="lessen360", name="a")], heads, masters)
    assert [(p.version_number, p.change_type, p.changed_fields) for p in planned] == [(5, "update", [])]


def test_a_deleted_entity_that_comes_back_is_created_again() -> None:
    heads = {("location", "e1"): EntityHead(2, True, {"entity_id": "e1", "deleted": True})}
    [p] = plan_versions([rec("e1", "h9")], heads, {})
    assert (p.version_number, p.change_type) == (3, "create")


def test_rows_coerce_canonical_values_to_columns() -> None:
    row = entity_row("service_request", {"entity_id": "sr-1", "location_id": "loc-1", "priority": 2,
                                         "requested_at": 1_700_000_000_000, "unknown_field": 1, "status": "open"})
    assert row["requested_at"] == datetime.fromtimestamp(1_700_000_000, tz=UTC) and row["priority"] == 2
    assert "unknown_field" not in row and "entity_id" not in row and row["completed_at"] is None
    assert to_date(19_000) == date(2022, 1, 8) and to_date("2024-01-02") == date(2024, 1, 2)
    assert to_datetime("2024-01-02T03:04:05Z") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert residential_row("loc-1", {"residential": {"bedrooms": 2, "market_rent": "99.5"}}) == {
        "location_id": "loc-1", "bedrooms": 2, "bathrooms": None, "square_feet": None,
        "market_rent": Decimal("99.5"), "occupancy_status": None}
    assert residential_row("loc-1", {"residential": None}) is None


def test_parent_ids_from_fields_or_references() -> None:
    assert parent_ids("service_request", {"location_id": "loc-1", "resident_id": None}, {"resident": "res-1"}) == {
        "location_id": "loc-1", "resident_id": "res-1"}
    assert parent_ids("location", {"parent_location_id": None}, {"location": "loc-x"}) == {}
    assert parent_ids("attachment", {"service_request_id": "sr-1"}, {}) == {"service_request_id": "sr-1"}


def test_records_older_than_what_the_source_last_said_are_stale() -> None:
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    masters = {("location", "e1", "yardi"): MasterState("h-new", t1)}
    heads = {("location", "e1"): EntityHead(2, False, {"entity_id": "e1"})}
    replayed_old = rec("e1", "h-old", source_updated_at=t0)
    same_time_other_content = rec("e1", "h-other", source_updated_at=t1)
    planned = plan_versions([replayed_old, same_time_other_content], heads, masters)
    assert [(p.item_index, p.version_number) for p in planned] == [(1, 3)]
    no_times = rec("e1", "h-x")
    assert [p.version_number for p in plan_versions([no_times], heads, masters)] == [3]
