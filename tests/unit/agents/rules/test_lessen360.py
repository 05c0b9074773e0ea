"""Lessen360 work orders and attachments (epoch milliseconds) through the real rules."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from rules_test_helpers import assert_canonical, failures, location_id, source_entity_id

UTC = timezone.utc
MARCH_1_1405 = 1_772_373_900_000  # 2026-03-01T14:05:00Z


def lessen_work_order(**overrides: object) -> dict:
    record = {
        "workOrderId": "WO-100001", "propertyCode": "maple01", "unitCode": "101",
        "resident": {"fullName": "Ana Garcia", "phone": "+15125550142", "email": "ana.garcia@example.com"},
        "trade": "PEST_CONTROL", "task": "Ants", "urgency": "URGENT", "status": "ON_HOLD",
        "description": "Ants in the kitchen", "permissionToEnter": True, "accessInstructions": "Key at office",
        "createdAtMs": MARCH_1_1405, "completedAtMs": None, "updatedAtMs": MARCH_1_1405 + 60_000, "archived": False,
    }
    record.update(overrides)
    return record


def lessen_attachment(**overrides: object) -> dict:
    record = {
        "attachmentId": "att_00000000cafe", "workOrderId": "WO-100001", "fileName": "photo_0001.png",
        "mimeType": "image/png", "sizeBytes": 2048, "url": "https://files.lessen360.example.com/WO-100001/a.png",
        "uploadedAtMs": MARCH_1_1405, "updatedAtMs": MARCH_1_1405, "archived": False,
    }
    record.update(overrides)
    return record


def test_work_order_links_to_the_yardi_unit(engine):
    from test_yardi import yardi_location

    result = engine.transform("lessen360", "service_request", lessen_work_order())
    assert_canonical(result)
    yardi_unit = engine.transform("yardi", "location", yardi_location())
    assert result.entity["location_id"] == yardi_unit.entity_id == location_id("MAPLE01", "101")
    assert result.references == {"location": yardi_unit.entity_id}
    entity = result.entity
    assert result.entity_id == source_entity_id("sr-", "service_request", "lessen360", "WO-100001")
    assert (entity["category"], entity["subcategory"], entity["priority"], entity["status"]) == (
        "pest", "Ants", 3, "on_hold")
    assert entity["requestor_name"] == "Ana Garcia" and entity["resident_id"] is None
    assert entity["requested_at"] == datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
    assert entity["source_updated_at"] == datetime(2026, 3, 1, 14, 6, tzinfo=UTC)


def test_emergency(engine):
    assert engine.transform("lessen360", "service_request", lessen_work_order(urgency="EMERGENCY")).priority == 1


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"trade": None}, "common.service_request.validate.category.required", "category"),
    ({"trade": "ASTRONOMY"}, "lessen360.service_request.transform.category.map", "category"),
    ({"urgency": "YESTERDAY"}, "lessen360.service_request.transform.priority.map", "priority"),
    ({"resident": {"fullName": "A", "phone": "+1 (555) 010", "email": None}},
     "common.service_request.normalize.requestor_phone.phone", "requestor_phone"),
    ({"resident": {"fullName": "A", "phone": None, "email": "a at b.com"}},
     "common.service_request.validate.requestor_email.email", "requestor_email"),
    ({"createdAtMs": None}, "common.service_request.validate.requested_at.required", "requested_at"),
    ({"createdAtMs": 10**20}, "lessen360.service_request.transform.requested_at.timestamp", "requested_at"),
    ({"status": "DONE?"}, "lessen360.service_request.transform.status.map", "status"),
])
def test_work_order_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "lessen360", "service_request", lessen_work_order(**overrides))


def test_attachment(engine):
    result = engine.transform("lessen360", "attachment", lessen_attachment())
    assert_canonical(result)
    sr_id = source_entity_id("sr-", "service_request", "lessen360", "WO-100001")
    assert result.entity["service_request_id"] == sr_id and result.references == {"service_request": sr_id}
    assert result.entity["uploaded_at"] == datetime(2026, 3, 1, 14, 5, tzinfo=UTC)


@pytest.mark.parametrize(("overrides", "rule", "field"), [
    ({"url": None}, "common.attachment.validate.url.required", "url"),
    ({"fileName": None}, "common.attachment.validate.file_name.required", "file_name"),
    ({"fileName": "x" * 300}, "common.attachment.validate.file_name.length", "file_name"),
])
def test_attachment_failures(engine, overrides, rule, field):
    assert (rule, field) in failures(engine, "lessen360", "attachment", lessen_attachment(**overrides))


@pytest.mark.parametrize(("entity_type", "factory"), [
    ("service_request", lessen_work_order), ("attachment", lessen_attachment)])
def test_deletes(engine, entity_type, factory):
    result = engine.transform("lessen360", entity_type, factory(archived=True))
    assert result.deleted is True
    assert_canonical(result)
