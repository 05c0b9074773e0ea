"""Insight records (RFC 3339 times, deleted_at tombstones) through the real rules."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from rules_test_helpers import assert_canonical, failures, location_id, source_entity_id

UTC = timezone.utc


def insight_location(**overrides: object) -> dict:
    record = {
        "location_id": "loc_00000000abcd", "kind": "unit", "property_ref": "will03", "unit_ref": "305",
        "display_name": "Willow Place", "street": "77 Pine St", "city": "Phoenix", "region": "AZ",
        "postal": "85004", "country_code": "US", "beds": 3, "baths": 2.0, "sqft": 1400, "rent_cents": 199500,
        "occupancy": "vacant", "updated_at": "2026-03-01T14:05:00+00:00", "deleted_at": None,
    }
    record.update(overrides)
    return record


def insight_resident(**overrides: object) -> dict:
    record = {
        "occupant_id": "occ_00000000beef", "property_ref": "will03", "unit_ref": "305", "given_name": "Kira",
        "family_name": "Okafor", "contact": {"email": "kira@example.com", "phone": "+16025550123"},
        "occupancy_status": "incoming", "move_in": "2026-04-01", "move_out": None,
        "updated_at": "2026-03-01T14:05:00+00:00", "deleted_at": None,
    }
    record.update(overrides)
    return record


def insight_service_request(**overrides: object) -> dict:
    record = {
        "ticket_id": "tkt_0000000000aa", "property_ref": "will03", "unit_ref": "305",
        "occupant_id": "occ_00000000beef", "category_code": "HVAC", "summary": "No Cooling",
        "details": "Intermittent problem since Monday", "priority": 5, "state": "done",
        "contact_name": "Kira Okafor", "contact_phone": "+16025550123", "contact_email": "kira@example.com",
        "entry_permitted": True, "entry_notes": "Call first", "opened_at": "2026-03-01T09:05:00-05:00",
        "closed_at": "2026-03-02T10:00:00Z", "updated_at": "2026-03-02T10:00:00+00:00", "deleted_at": None,
    }
    record.update(overrides)
    return record


def test_location(engine):
    result = engine.transform("insight", "location", insight_location())
    assert_canonical(result)
    assert result.entity_id == location_id("WILL03", "305")
    assert result.entity["residential"]["market_rent"] == Decimal("1995.00")  # from cents
    assert result.entity["residential"]["occupancy_status"] == "vacant"
    assert result.entity["state"] == "AZ"


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"city": None}, "common.location.validate.city.required", "city"),
    ({"kind": "campus"}, "insight.location.transform.location_type.map", "location_type"),
    ({"updated_at": "last week"}, "insight.location.transform.source_updated_at.timestamp", "source_updated_at"),
    ({"postal": "ABCDE"}, "common.location.validate.postal_code.regex", "postal_code"),
])
def test_location_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "insight", "location", insight_location(**overrides))


def test_resident(engine):
    result = engine.transform("insight", "resident", insight_resident())
    assert_canonical(result)
    assert result.entity_id == source_entity_id("res-", "resident", "insight", "occ_00000000beef")
    assert result.entity["status"] == "future"
    assert result.entity["move_in_date"] == date(2026, 4, 1)
    assert result.entity["location_id"] == location_id("WILL03", "305")


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"family_name": None}, "common.resident.validate.last_name.required", "last_name"),
    ({"contact": {"email": "kira at example.com", "phone": None}}, "common.resident.validate.email.email", "email"),
    ({"move_in": "01-02-2025x"}, "insight.resident.transform.move_in_date.date", "move_in_date"),
    ({"occupancy_status": "squatter"}, "insight.resident.transform.status.map", "status"),
])
def test_resident_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "insight", "resident", insight_resident(**overrides))


def test_service_request(engine):
    result = engine.transform("insight", "service_request", insight_service_request())
    assert_canonical(result)
    entity = result.entity
    assert (entity["category"], entity["priority"], entity["status"]) == ("hvac", 7, "completed")
    assert entity["description"] == "Intermittent problem since Monday"
    assert entity["requested_at"] == datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
    assert entity["completed_at"] == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert result.references["resident"] == source_entity_id("res-", "resident", "insight", "occ_00000000beef")


def test_description_falls_back_to_the_summary(engine):
    entity = engine.transform("insight", "service_request", insight_service_request(details=" ")).entity
    assert entity["description"] == "No Cooling"


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"category_code": None}, "common.service_request.validate.category.required", "category"),
    ({"category_code": "XXXX"}, "insight.service_request.transform.category.map", "category"),
    ({"priority": 11}, "insight.service_request.transform.priority.map", "priority"),
    ({"opened_at": "yesterday at noon"}, "insight.service_request.transform.requested_at.timestamp",
     "requested_at"),
    ({"contact_email": "kira@"}, "common.service_request.validate.requestor_email.email", "requestor_email"),
    ({"state": "limbo"}, "insight.service_request.transform.status.map", "status"),
])
def test_service_request_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "insight", "service_request", insight_service_request(**overrides))


@pytest.mark.parametrize(("entity_type", "factory"), [
    ("location", insight_location), ("resident", insight_resident), ("service_request", insight_service_request)])
def test_deletes(engine, entity_type, factory):
    result = engine.transform("insight", entity_type, factory(deleted_at="2026-03-05T00:00:00+00:00"))
    assert result.deleted is True
    assert_canonical(result)


def test_a_bare_tombstone_is_still_a_delete(engine):
    tombstone = {"ticket_id": "tkt_1", "property_ref": "will03", "updated_at": "2026-03-05T00:00:00+00:00",
                 "deleted_at": "2026-03-05T00:00:00+00:00"}
    result = engine.transform("insight", "service_request", tombstone)
    assert result.deleted is True
    assert result.entity_id == source_entity_id("sr-", "service_request", "insight", "tkt_1")
    assert_canonical(result)
