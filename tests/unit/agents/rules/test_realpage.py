"""RealPage records (property-local times with the record's timeZone) through the real rules."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from rules_test_helpers import assert_canonical, failures, location_id, source_entity_id

UTC = timezone.utc


def rp_location(**overrides: object) -> dict:
    record = {
        "locationId": "U1001", "locationType": "unit", "propertyCode": "cedar02", "unitNumber": "204",
        "propertyName": "Cedar Commons",
        "address": {"street1": "500 Oak Ave", "street2": "Apt 204", "city": "Denver", "state": "CO",
                    "zip": "80202", "country": "US"},
        "bedrooms": 1, "bathrooms": 1.0, "squareFeet": 760, "marketRent": 1250.5, "occupancyStatus": "OnNotice",
        "timeZone": "America/Denver", "lastModifiedDate": "2026-03-01T07:05:00", "isDeleted": False,
    }
    record.update(overrides)
    return record


def rp_resident(**overrides: object) -> dict:
    record = {
        "residentId": "R500001", "propertyCode": "cedar02", "unitNumber": "204", "firstName": "Luis",
        "lastName": "Chen", "email": "luis.chen@example.com", "mobilePhone": None, "homePhone": "303-555-0199",
        "leaseStatus": "Former", "moveInDate": "2024-05-01", "moveOutDate": "2025-04-30",
        "timeZone": "America/Denver", "lastModifiedDate": "2026-03-01T07:05:00", "isDeleted": False,
    }
    record.update(overrides)
    return record


def rp_service_request(**overrides: object) -> dict:
    record = {
        "workOrderId": "WO700001", "propertyCode": "cedar02", "unitNumber": "204", "residentId": "R500001",
        "category": "APPLIANCES", "subCategory": "Dishwasher", "priority": "Medium", "status": "Assigned",
        "problemDescription": "Stopped working last night", "requesterName": "Luis Chen",
        "requesterPhone": "303-555-0199", "requesterEmail": "luis.chen@example.com", "permissionToEnter": False,
        "entryNotes": None, "createdDate": "2026-03-01T07:05:00", "completedDate": None,
        "timeZone": "America/Denver", "lastModifiedDate": "2026-03-01T08:00:00", "isDeleted": False,
    }
    record.update(overrides)
    return record


def rp_attachment(**overrides: object) -> dict:
    record = {
        "attachmentId": "ATT900001", "workOrderId": "WO700001", "propertyCode": "cedar02",
        "fileName": "photo_0042.jpg", "contentType": "image/JPEG", "fileSize": 123456,
        "downloadUrl": "https://files.realpage.example.com/WO700001/ATT900001.jpg",
        "uploadedDate": "2026-07-01T07:05:00", "timeZone": "America/Denver",
        "lastModifiedDate": "2026-07-01T07:05:00", "isDeleted": False,
    }
    record.update(overrides)
    return record


def test_unit_with_local_time(engine):
    result = engine.transform("realpage", "location", rp_location())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_id == location_id("CEDAR02", "204")
    assert entity["parent_location_id"] == location_id("CEDAR02")
    assert entity["residential"] == {"bedrooms": 1, "bathrooms": 1.0, "square_feet": 760,
                                     "market_rent": Decimal("1250.50"), "occupancy_status": "notice"}
    assert (entity["address_line1"], entity["address_line2"], entity["postal_code"]) == ("500 Oak Ave", "Apt 204",
                                                                                         "80202")
    # 07:05 in Denver in March (MST, UTC-7) is 14:05 UTC.
    assert entity["source_updated_at"] == datetime(2026, 3, 1, 14, 5, tzinfo=UTC)


def test_same_unit_from_yardi_and_realpage_codes_is_one_location(engine):
    from test_yardi import yardi_location

    yardi = engine.transform("yardi", "location", yardi_location(PropertyCode="CEDAR02", UnitCode="204"))
    realpage = engine.transform("realpage", "location", rp_location())
    assert yardi.entity_id == realpage.entity_id


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"address": {"city": None, "state": "CO"}}, "common.location.validate.city.required", "city"),
    ({"locationType": "floor"}, "realpage.location.transform.location_type.map", "location_type"),
    ({"lastModifiedDate": "01/03/2026"}, "realpage.location.transform.source_updated_at.timestamp",
     "source_updated_at"),
    ({"timeZone": "Denver"}, "realpage.location.timezone_field", "timeZone"),
    ({"marketRent": -5.0}, "common.location.validate.residential.market_rent.range", "residential.market_rent"),
])
def test_location_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "realpage", "location", rp_location(**overrides))


def test_resident(engine):
    result = engine.transform("realpage", "resident", rp_resident())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_id == source_entity_id("res-", "resident", "realpage", "R500001")
    assert entity["location_id"] == location_id("CEDAR02", "204")
    assert entity["phone"] == "+13035550199"  # home phone when there is no mobile
    assert entity["status"] == "past"
    assert (entity["move_in_date"], entity["move_out_date"]) == (date(2024, 5, 1), date(2025, 4, 30))


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"lastName": None}, "common.resident.validate.last_name.required", "last_name"),
    ({"email": "luis at example.com"}, "common.resident.validate.email.email", "email"),
    ({"moveInDate": "2025-02-30"}, "realpage.resident.transform.move_in_date.date", "move_in_date"),
    ({"homePhone": "0000"}, "common.resident.normalize.phone.phone", "phone"),
    ({"leaseStatus": "Evicted?"}, "realpage.resident.transform.status.map", "status"),
])
def test_resident_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "realpage", "resident", rp_resident(**overrides))


def test_service_request(engine):
    result = engine.transform("realpage", "service_request", rp_service_request())
    assert_canonical(result)
    entity = result.entity
    assert result.entity_id == source_entity_id("sr-", "service_request", "realpage", "WO700001")
    assert result.references == {"location": location_id("CEDAR02", "204"),
                                 "resident": source_entity_id("res-", "resident", "realpage", "R500001")}
    assert (entity["category"], entity["priority"], entity["status"]) == ("appliance", 5, "scheduled")
    assert entity["requestor_phone"] == "+13035550199"
    assert entity["requested_at"] == datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
    assert entity["permission_to_enter"] is False


def test_summer_time_follows_the_zone(engine):
    entity = engine.transform("realpage", "service_request", rp_service_request(
        createdDate="2026-07-01T07:05:00", lastModifiedDate="2026-07-01T08:00:00")).entity
    assert entity["requested_at"] == datetime(2026, 7, 1, 13, 5, tzinfo=UTC)  # MDT, UTC-6


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"category": None}, "common.service_request.validate.category.required", "category"),
    ({"category": "TELEPORTER"}, "realpage.service_request.transform.category.map", "category"),
    ({"status": "Lost"}, "realpage.service_request.transform.status.map", "status"),
    ({"priority": "Meh"}, "realpage.service_request.transform.priority.map", "priority"),
    ({"requesterEmail": "luis at example.com"}, "common.service_request.validate.requestor_email.email",
     "requestor_email"),
    ({"requesterPhone": "phone"}, "common.service_request.normalize.requestor_phone.phone", "requestor_phone"),
    ({"createdDate": "2025-13-01T10:00:00"}, "realpage.service_request.transform.requested_at.timestamp",
     "requested_at"),
])
def test_service_request_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "realpage", "service_request", rp_service_request(**overrides))


def test_attachment(engine):
    result = engine.transform("realpage", "attachment", rp_attachment())
    assert_canonical(result)
    entity = result.entity
    sr_id = source_entity_id("sr-", "service_request", "realpage", "WO700001")
    assert result.entity_id == source_entity_id("att-", "attachment", "realpage", "ATT900001")
    assert entity["service_request_id"] == sr_id and result.references == {"service_request": sr_id}
    assert (entity["file_name"], entity["content_type"], entity["size_bytes"]) == ("photo_0042.jpg", "image/jpeg",
                                                                                   123456)
    assert entity["uploaded_at"] == datetime(2026, 7, 1, 13, 5, tzinfo=UTC)


def test_attachment_without_content_type_gets_the_schema_default(engine):
    entity = engine.transform("realpage", "attachment", rp_attachment(contentType=None)).entity
    assert entity["content_type"] == "application/octet-stream"


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"downloadUrl": None}, "common.attachment.validate.url.required", "url"),
    ({"downloadUrl": "ftp:/nowhere"}, "common.attachment.validate.url.regex", "url"),
    ({"fileName": "  "}, "common.attachment.validate.file_name.required", "file_name"),
    ({"fileSize": -1}, "common.attachment.validate.size_bytes.range", "size_bytes"),
    ({"contentType": "jpeg"}, "common.attachment.validate.content_type.regex", "content_type"),
])
def test_attachment_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "realpage", "attachment", rp_attachment(**overrides))


@pytest.mark.parametrize(("entity_type", "factory"), [
    ("location", rp_location), ("resident", rp_resident), ("service_request", rp_service_request),
    ("attachment", rp_attachment)])
def test_deletes(engine, entity_type, factory):
    result = engine.transform("realpage", entity_type, factory(isDeleted=True))
    assert result.deleted is True and result.entity["deleted"] is True
    assert_canonical(result)
