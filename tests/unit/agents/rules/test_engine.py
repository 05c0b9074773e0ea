"""The generic engine on a synthetic source ("acme", tests/.../data/acme_rules.yaml)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from rules_test_helpers import assert_canonical, failures, location_id, source_entity_id

from syncflow.errors import ValidationError

UTC = timezone.utc


def acme_request(**overrides: object) -> dict:
    record = {
        "id": "A-1",
        "site": {"code": " p1 ", "unit": "101", "tz": "America/New_York"},
        "customer": {"id": "c9", "name": {"first": "ana", "last": "Lopez"}},
        "kind": "Pipes",
        "tags": ["leak", "kitchen"],
        "urgency": "high",
        "state": "Open",
        "contacts": [{"type": "phone", "value": "512.555.0142"}, {"type": "email", "value": " Ana@Example.COM "}],
        "entry": "Y",
        "opened": "01.03.2026 09:30",
        "closed": None,
        "modified_ms": 1_772_000_000_000,
        "meta": {"op": "upsert"},
    }
    record.update(overrides)
    return record


def test_a_valid_record_becomes_its_canonical_entity(acme):
    result = acme.transform("acme", "service_request", acme_request())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_type == "service_request"
    assert result.entity_id == source_entity_id("sr-", "service_request", "acme", "A-1")
    assert entity["location_id"] == location_id("P1", "101")
    assert entity["resident_id"] == source_entity_id("res-", "resident", "acme", "c9")
    assert result.references == {"location": entity["location_id"], "resident": entity["resident_id"]}
    assert entity["category"] == "plumbing"
    assert entity["subcategory"] == "leak"
    assert entity["priority"] == 3 and result.priority == 3
    assert entity["requestor_name"] == "ana Lopez"
    assert entity["requestor_email"] == "ana@example.com"
    assert entity["requestor_phone"] == "+15125550142"
    assert entity["permission_to_enter"] is True
    assert entity["access_notes"] == "from acme"
    # 09:30 in New York (the record's own zone, not the source default Chicago) is 14:30 UTC.
    assert entity["requested_at"] == datetime(2026, 3, 1, 14, 30, tzinfo=UTC)
    assert entity["source_updated_at"] == datetime.fromtimestamp(1_772_000_000, UTC)
    assert entity["source_system"] == "acme" and entity["source_id"] == "A-1"
    assert entity["deleted"] is False and result.deleted is False


def test_the_source_default_time_zone_applies_without_a_record_zone(acme):
    record = acme_request(site={"code": "P1", "unit": "101"})
    entity = acme.transform("acme", "service_request", record).entity
    assert entity["requested_at"] == datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # Chicago, UTC-6


def test_offsets_in_the_text_win_over_any_zone(acme):
    entity = acme.transform("acme", "service_request", acme_request(opened="2026-03-01T09:30:00+01:00")).entity
    assert entity["requested_at"] == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def test_every_failure_is_listed_with_its_rule_and_field(acme):
    record = acme_request(
        kind=None, legacy_kind=None, state="Lost", urgency="whenever", entry="maybe", opened="31.02.2026 10:00",
        contacts=[{"type": "email", "value": "not-an-email"}, {"type": "phone", "value": "12"}],
    )
    found = failures(acme, "acme", "service_request", record)
    assert set(found) == {
        ("acme.service_request.transform.status.map", "status"),
        ("acme.service_request.transform.priority.map", "priority"),
        ("acme.service_request.transform.permission_to_enter.bool", "permission_to_enter"),
        ("acme.service_request.transform.requested_at.timestamp", "requested_at"),
        ("common.service_request.normalize.requestor_phone.phone", "requestor_phone"),
        ("common.service_request.validate.requestor_email.email", "requestor_email"),
        ("common.service_request.validate.category.required", "category"),
    }
    assert "known" in found[("acme.service_request.transform.status.map", "status")]


def test_the_error_carries_the_value_and_a_readable_message(acme):
    with pytest.raises(ValidationError) as caught:
        acme.transform("acme", "service_request", acme_request(state="Lost"))
    (error,) = caught.value.errors
    assert error.value == "Lost"
    assert caught.value.rule == "acme.service_request.transform.status.map"
    assert "status='Lost'" in str(caught.value)


def test_first_picks_the_first_present_path_and_map_other_catches_the_rest(acme):
    entity = acme.transform("acme", "service_request", acme_request(kind="", legacy_kind="Misc")).entity
    assert entity["category"] == "general"
    entity = acme.transform("acme", "service_request", acme_request(kind="Roof")).entity
    assert entity["category"] == "other"


def test_map_keys_match_trimmed_and_case_insensitively(acme):
    entity = acme.transform("acme", "service_request", acme_request(state="  OPEN ", urgency="High")).entity
    assert entity["status"] == "open" and entity["priority"] == 3


def test_path_default_fills_a_missing_value(acme):
    record = acme_request()
    del record["state"]
    assert acme.transform("acme", "service_request", record).entity["status"] == "open"


def test_when_rule_raises_priority_for_an_emergency(acme):
    result = acme.transform("acme", "service_request", acme_request(tags=["Gas Leak"], urgency="normal"))
    assert result.priority == 1 and result.entity["priority"] == 1


def test_missing_priority_takes_the_schema_default(acme):
    result = acme.transform("acme", "service_request", acme_request(urgency=None))
    assert result.entity["priority"] == 5 and result.priority == 5


def test_cross_field_rule_completion_not_before_request(acme):
    found = failures(acme, "acme", "service_request", acme_request(closed="01.02.2026 09:30"))
    assert ("common.service_request.validate.completed_at.not_before", "completed_at") in found


def test_delete_signal(acme):
    result = acme.transform("acme", "service_request", acme_request(meta={"op": "delete"}))
    assert result.deleted is True and result.entity["deleted"] is True
    assert_canonical(result)


def test_a_delete_needs_only_its_identity(acme):
    record = {"id": "A-1", "site": {"code": "P1"}, "meta": {"op": "d"}, "state": "Lost"}
    result = acme.transform("acme", "service_request", record)
    assert result.deleted is True
    assert result.entity_id == source_entity_id("sr-", "service_request", "acme", "A-1")
    assert_canonical(result)
    with pytest.raises(ValidationError) as caught:
        acme.transform("acme", "service_request", {"meta": {"op": "d"}})
    assert caught.value.errors[0].rule == "identity.service_request"


def test_a_bad_record_time_zone_is_a_failure_of_its_rule(acme):
    found = failures(acme, "acme", "service_request", acme_request(site={"code": "P1", "tz": "Mars/Olympus"}))
    assert ("acme.service_request.timezone_field", "site.tz") in found


def test_values_of_unexpected_shape_are_validation_errors_not_crashes(acme):
    found = failures(acme, "acme", "service_request", acme_request(opened={"nested": True}, urgency=["x"]))
    assert ("acme.service_request.transform.requested_at.timestamp", "requested_at") in found
    assert ("acme.service_request.transform.priority.map", "priority") in found
    with pytest.raises(ValidationError):
        acme.transform("acme", "service_request", "not a record")  # type: ignore[arg-type]


def test_unknown_source_or_entity_type(acme):
    assert acme.supports("acme", "service_request")
    assert not acme.supports("acme", "attachment")
    assert not acme.supports("other", "service_request")
    with pytest.raises(ValidationError):
        acme.transform("acme", "attachment", {})


def test_location_identity_nested_record_decimal_and_parent(acme):
    unit = acme.transform("acme", "location", {
        "id": "u1", "type": "unit", "property": "p1 ", "unit": " 101", "city": "Austin", "beds": "2",
        "rent": 1450.5, "modified": "2026-03-01T10:00:00Z"})
    assert_canonical(unit)
    assert unit.entity_id == location_id("P1", "101")
    assert unit.entity["parent_location_id"] == location_id("P1")
    assert unit.references == {"location": location_id("P1")}
    assert unit.entity["residential"] == {"bedrooms": 2, "bathrooms": None, "square_feet": None,
                                          "market_rent": Decimal("1450.50"), "occupancy_status": None}
    assert unit.priority == 4  # the entity's priority from the rules
    prop = acme.transform("acme", "location", {"id": "p", "type": "property", "property": "P1",
                                               "modified": "2026-03-01T10:00:00Z"})
    assert prop.entity_id == location_id("P1")
    assert prop.entity["parent_location_id"] is None and prop.references == {}
    assert prop.entity["residential"] is None and prop.entity["country"] == "US"


def test_required_if_and_the_canonical_schema_check(acme):
    found = failures(acme, "acme", "location", {"id": "u1", "type": "unit", "property": "P1",
                                                 "modified": "2026-03-01T10:00:00Z"})
    assert ("acme.location.validate.unit_code.required_if", "unit_code") in found
    found = failures(acme, "acme", "location", {"id": "u1", "type": "tower", "property": "P1", "unit": "1"})
    assert ("acme.location.validate.location_type.allowed", "location_type") in found
    assert ("schema.location", "location_type") not in found  # one failure per field


def test_the_schema_check_catches_what_no_rule_did(acme):
    found = failures(acme, "acme", "location", {"id": "u1", "property": "P1", "unit": "1"})
    assert found == {("schema.location", "location_type"): "is required"}


def test_results_are_independent_between_calls(acme):
    first = acme.transform("acme", "service_request", acme_request())
    acme.transform("acme", "service_request", acme_request(id="A-2", site={"code": "P2"}))
    assert first.entity["location_id"] == location_id("P1", "101")
    assert first.entity["category"] == "plumbing"


def test_dates_pass_through_when_already_typed(acme):
    record = acme_request(opened=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), modified_ms=datetime(2026, 3, 1, tzinfo=UTC))
    entity = acme.transform("acme", "service_request", record).entity
    assert entity["requested_at"] == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
