"""Yardi Voyager records through the real rules file."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from rules_test_helpers import assert_canonical, failures, location_id, source_entity_id

UTC = timezone.utc


def yardi_location(**overrides: object) -> dict:
    record = {
        "LocationId": "maple01-101", "RecordType": "Unit", "PropertyCode": "maple01", "UnitCode": "101",
        "MarketingName": "Maple  Apartments",
        "Address": {"Address1": "120 Main St Unit 101", "Address2": None, "City": "Austin", "State": "tx",
                    "PostalCode": "78701", "Country": "United States", "Email": None},
        "UnitType": "2x1", "Bedrooms": 2, "Bathrooms": 1.5, "SqFt": 980, "MarketRent": "1450.00",
        "UnitStatus": "Occupied No Notice", "UpdateDate": "2026-03-01T14:05:00", "IsDeleted": False,
    }
    record.update(overrides)
    return record


def yardi_resident(**overrides: object) -> dict:
    record = {
        "Identification": {"IDValue": "t0001234", "IDType": "Resident", "OrganizationName": "Yardi"},
        "PropertyCode": "maple01", "UnitCode": "101",
        "Name": {"FirstName": "Ana", "MiddleName": None, "LastName": "Garcia"},
        "Address": {"Address1": None, "Address2": None, "City": None, "State": None, "PostalCode": None,
                    "Country": "US", "Email": "Ana.Garcia@Example.com"},
        "Phone": [{"PhoneType": "home", "PhoneNumber": "512-555-0100"},
                  {"PhoneType": "cell", "PhoneNumber": "(512) 555-0142"}],
        "CustomerStatus": "Current", "LeaseFromDate": "01/15/2025", "LeaseToDate": "01/14/2026",
        "MoveInDate": "01/15/2025", "MoveOutDate": None, "UpdateDate": "2026-03-01T14:05:00", "IsDeleted": False,
    }
    record.update(overrides)
    return record


def yardi_service_request(**overrides: object) -> dict:
    record = {
        "ServiceRequestId": "40001", "PropertyCode": "maple01", "UnitCode": "101", "TenantCode": "t0001234",
        "Category": "Plumbing", "SubCategory": "Leaking Faucet", "Priority": "High", "CurrentStatus": "In Progress",
        "StatusHistory": [{"Status": "Open", "Date": "2026-03-01T14:05:00", "UpdatedBy": "maint.desk"}],
        "BriefDescription": "Leak", "FullDescription": "Water under the kitchen sink",
        "RequestorName": "Ana Garcia", "RequestorPhoneNumber": "+1 512 555 0142",
        "RequestorEmail": "ANA.GARCIA@example.com", "HasPermissionToEnter": True, "AccessNotes": "Dog in unit",
        "ServiceRequestDate": "2026-03-01T14:05:00", "CompletedDate": None,
        "UpdateDate": "2026-03-02T08:00:00", "IsDeleted": False,
    }
    record.update(overrides)
    return record


def test_unit(engine):
    result = engine.transform("yardi", "location", yardi_location())
    assert_canonical(result)
    assert result.entity_id == location_id("MAPLE01", "101")
    assert result.references == {"location": location_id("MAPLE01")}
    assert result.entity == {
        "entity_id": location_id("MAPLE01", "101"), "location_type": "unit", "property_code": "MAPLE01",
        "unit_code": "101", "parent_location_id": location_id("MAPLE01"), "name": "Maple Apartments",
        "address_line1": "120 Main St Unit 101", "address_line2": None, "city": "Austin", "state": "TX",
        "postal_code": "78701", "country": "US", "status": "active",
        "residential": {"bedrooms": 2, "bathrooms": 1.5, "square_feet": 980, "market_rent": Decimal("1450.00"),
                        "occupancy_status": "occupied"},
        "source_system": "yardi", "source_id": "maple01-101",
        "source_updated_at": datetime(2026, 3, 1, 14, 5, tzinfo=UTC), "deleted": False,
    }
    assert result.priority == 5


def test_property_and_down_unit(engine):
    prop = engine.transform("yardi", "location", yardi_location(
        LocationId="maple01", RecordType="Property", UnitCode=None, Bedrooms=None, Bathrooms=None, SqFt=None,
        MarketRent=None, UnitStatus=None))
    assert_canonical(prop)
    assert prop.entity_id == location_id("MAPLE01")
    assert prop.entity["residential"] is None and prop.entity["parent_location_id"] is None
    down = engine.transform("yardi", "location", yardi_location(UnitStatus="Down"))
    assert down.entity["status"] == "inactive"


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"Address": {"City": None, "State": "TX"}}, "common.location.validate.city.required", "city"),
    ({"RecordType": "Tower"}, "yardi.location.transform.location_type.map", "location_type"),
    ({"UnitCode": None}, "common.location.validate.unit_code.required_if", "unit_code"),
    ({"MarketRent": "lots"}, "yardi.location.transform.residential.market_rent.decimal", "residential.market_rent"),
    ({"Bedrooms": 99}, "common.location.validate.residential.bedrooms.range", "residential.bedrooms"),
    ({"UnitStatus": "Haunted"}, "yardi.location.transform.residential.occupancy_status.map",
     "residential.occupancy_status"),
    ({"UpdateDate": "03/01/2026"}, "yardi.location.transform.source_updated_at.timestamp", "source_updated_at"),
    ({"Address": {"City": "Austin", "State": "Texas"}}, "common.location.validate.state.regex", "state"),
])
def test_location_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "yardi", "location", yardi_location(**overrides))


def test_resident(engine):
    result = engine.transform("yardi", "resident", yardi_resident())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_id == source_entity_id("res-", "resident", "yardi", "t0001234")
    assert entity["location_id"] == location_id("MAPLE01", "101")
    assert result.references == {"location": location_id("MAPLE01", "101")}
    assert (entity["first_name"], entity["last_name"]) == ("Ana", "Garcia")
    assert entity["email"] == "ana.garcia@example.com"
    assert entity["phone"] == "+15125550142"  # the cell phone before the home phone
    assert entity["move_in_date"] == date(2025, 1, 15) and entity["move_out_date"] is None
    assert entity["status"] == "current"


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"Name": {"FirstName": "Ana", "LastName": None}}, "common.resident.validate.last_name.required", "last_name"),
    ({"Address": {"Email": "ana at example.com"}}, "common.resident.validate.email.email", "email"),
    ({"Phone": [{"PhoneType": "cell", "PhoneNumber": "555-01"}]}, "common.resident.normalize.phone.phone", "phone"),
    ({"MoveInDate": "13/45/2025"}, "yardi.resident.transform.move_in_date.date", "move_in_date"),
    ({"CustomerStatus": "Ghost"}, "yardi.resident.transform.status.map", "status"),
    ({"MoveOutDate": "01/01/2024"}, "common.resident.validate.move_out_date.not_before", "move_out_date"),
])
def test_resident_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "yardi", "resident", yardi_resident(**overrides))


def test_service_request(engine):
    result = engine.transform("yardi", "service_request", yardi_service_request())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_id == source_entity_id("sr-", "service_request", "yardi", "40001")
    assert result.references == {"location": location_id("MAPLE01", "101"),
                                 "resident": source_entity_id("res-", "resident", "yardi", "t0001234")}
    assert entity == {
        "entity_id": result.entity_id, "location_id": location_id("MAPLE01", "101"),
        "resident_id": source_entity_id("res-", "resident", "yardi", "t0001234"),
        "category": "plumbing", "subcategory": "Leaking Faucet", "priority": 3, "status": "in_progress",
        "description": "Water under the kitchen sink", "requestor_name": "Ana Garcia",
        "requestor_phone": "+15125550142", "requestor_email": "ana.garcia@example.com",
        "permission_to_enter": True, "access_notes": "Dog in unit",
        "requested_at": datetime(2026, 3, 1, 14, 5, tzinfo=UTC), "completed_at": None,
        "source_system": "yardi", "source_id": "40001",
        "source_updated_at": datetime(2026, 3, 2, 8, 0, tzinfo=UTC), "deleted": False,
    }
    assert result.priority == 3


def test_urgent_and_emergency_subcategories_are_priority_one(engine):
    assert engine.transform("yardi", "service_request", yardi_service_request(Priority="Urgent")).priority == 1
    gas = engine.transform("yardi", "service_request", yardi_service_request(Priority="Low", SubCategory="Gas Leak"))
    assert gas.priority == 1 and gas.entity["priority"] == 1


def test_common_area_request_refers_to_the_property(engine):
    result = engine.transform("yardi", "service_request", yardi_service_request(UnitCode=None, TenantCode=None))
    assert result.entity["location_id"] == location_id("MAPLE01")
    assert result.references == {"location": location_id("MAPLE01")}
    assert result.entity["resident_id"] is None


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"Category": None}, "common.service_request.validate.category.required", "category"),
    ({"Category": "Spaceship Repair"}, "yardi.service_request.transform.category.map", "category"),
    ({"CurrentStatus": "Lost"}, "yardi.service_request.transform.status.map", "status"),
    ({"RequestorEmail": "ana at example.com"}, "common.service_request.validate.requestor_email.email",
     "requestor_email"),
    ({"RequestorPhoneNumber": "call me"}, "common.service_request.normalize.requestor_phone.phone",
     "requestor_phone"),
    ({"ServiceRequestDate": "2025-02-30T25:61:00"}, "yardi.service_request.transform.requested_at.timestamp",
     "requested_at"),
    ({"ServiceRequestDate": None}, "common.service_request.validate.requested_at.required", "requested_at"),
    ({"Priority": "Whenever"}, "yardi.service_request.transform.priority.map", "priority"),
    ({"PropertyCode": " "}, "common.service_request.validate.location_id.required", "location_id"),
    ({"CompletedDate": "2026-02-01T00:00:00"}, "common.service_request.validate.completed_at.not_before",
     "completed_at"),
])
def test_service_request_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "yardi", "service_request", yardi_service_request(**overrides))


def test_all_failures_of_one_record_together(engine):
    found = failures(engine, "yardi", "service_request", yardi_service_request(
        Category="Spaceship Repair", RequestorEmail="x", ServiceRequestDate="yesterday"))
    assert {field for _, field in found} == {"category", "requestor_email", "requested_at"}


@pytest.mark.parametrize(("entity_type", "factory"), [
    ("location", yardi_location), ("resident", yardi_resident), ("service_request", yardi_service_request)])
def test_deletes(engine, entity_type, factory):
    result = engine.transform("yardi", entity_type, factory(IsDeleted=True))
    assert result.deleted is True and result.entity["deleted"] is True
    assert_canonical(result)
