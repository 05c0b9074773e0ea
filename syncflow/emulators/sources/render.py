"""Neutral world entities -> each source's native records, shaped exactly like
avro_schemas/sources/<source>/<Entity>.avsc (every field present), with the source's own
names, codes and time formats. A record marked invalid is rendered with the fault it
carries (docs/sources.md lists them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from syncflow.emulators.sources.world import Entity

Record = dict[str, Any]

YARDI_CATEGORY = {"plumbing": "Plumbing", "electrical": "Electrical", "hvac": "HVAC", "appliance": "Appliance",
                  "general": "General", "pest": "Pest Control", "locks": "Locks and Keys", "exterior": "Exterior"}
YARDI_PRIORITY = {1: "Urgent", 2: "High", 3: "Normal", 4: "Low"}
YARDI_STATUS = {"open": "Open", "scheduled": "Scheduled", "in_progress": "In Progress", "on_hold": "On Hold",
                "completed": "Completed", "cancelled": "Canceled"}
YARDI_UNIT_STATUS = {"occupied": "Occupied No Notice", "vacant": "Vacant Unrented Ready", "notice": "Notice Unrented"}
YARDI_CUSTOMER_STATUS = {"current": "Current", "past": "Past", "future": "Future", "notice": "Notice"}

RP_CATEGORY = {"plumbing": "PLUMBING", "electrical": "ELECTRICAL", "hvac": "HVAC", "appliance": "APPLIANCES",
               "general": "GENERAL", "pest": "PEST", "locks": "LOCKS", "exterior": "GROUNDS"}
RP_PRIORITY = {1: "Emergency", 2: "High", 3: "Medium", 4: "Low"}
RP_STATUS = {"open": "Open", "scheduled": "Assigned", "in_progress": "InProgress", "on_hold": "OnHold",
             "completed": "Completed", "cancelled": "Cancelled"}
RP_OCCUPANCY = {"occupied": "Occupied", "vacant": "Vacant", "notice": "OnNotice"}
RP_LEASE = {"current": "Current", "past": "Former", "future": "Future", "notice": "OnNotice"}

INSIGHT_CATEGORY = {"plumbing": "PLMB", "electrical": "ELEC", "hvac": "HVAC", "appliance": "APPL",
                    "general": "GENL", "pest": "PEST", "locks": "LOCK", "exterior": "EXTR"}
INSIGHT_PRIORITY = {1: 1, 2: 2, 3: 3, 4: 5}
INSIGHT_STATE = {"open": "new", "scheduled": "dispatched", "in_progress": "working", "on_hold": "paused",
                 "completed": "done", "cancelled": "void"}
INSIGHT_OCCUPANCY = {"current": "resident", "past": "former", "future": "incoming", "notice": "notice"}

LESSEN_TRADE = {"plumbing": "PLUMBING", "electrical": "ELECTRICAL", "hvac": "HVAC", "appliance": "APPLIANCE",
                "general": "HANDYMAN", "pest": "PEST_CONTROL", "locks": "LOCKSMITH", "exterior": "LANDSCAPING"}
LESSEN_URGENCY = {1: "EMERGENCY", 2: "URGENT", 3: "ROUTINE", 4: "SCHEDULED"}
LESSEN_STATUS = {"open": "CREATED", "scheduled": "SCHEDULED", "in_progress": "IN_PROGRESS", "on_hold": "ON_HOLD",
                 "completed": "COMPLETED", "cancelled": "CANCELLED"}

UNKNOWN_CATEGORY = {"yardi": "Spaceship Repair", "realpage": "TELEPORTER", "insight": "XXXX", "lessen360": "ASTRONOMY"}


def yardi_time(ms: int | None) -> str | None:
    """Voyager style: 'YYYY-MM-DDTHH:MM:SS', UTC, no offset."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def yardi_date(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%m/%d/%Y")


def local_time(ms: int | None, tz: str) -> str | None:
    """RealPage style: property-local 'YYYY-MM-DDTHH:MM:SS' without offset."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M:%S")


def iso_date(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def rfc3339(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _bad_email(email: str | None) -> str:
    return (email or "someone@example.com").replace("@", " at ")


def _split_name(full: str | None) -> tuple[str | None, str | None]:
    if not full:
        return None, None
    first, _, last = full.partition(" ")
    return first, last or None


# -- Yardi ---------------------------------------------------------------------------
def yardi_location(e: Entity) -> Record:
    d, unit = e.data, e.data["kind"] == "unit"
    return {
        "LocationId": e.source_id, "RecordType": "Unit" if unit else "Property",
        "PropertyCode": d["property_code"], "UnitCode": d["unit_code"], "MarketingName": d["name"],
        "Address": {"Address1": d["street"] + (f" Unit {d['unit_code']}" if unit else ""), "Address2": None,
                    "City": None if e.invalid == "missing_required" else d["city"], "State": d["state"],
                    "PostalCode": d["postal_code"], "Country": "US", "Email": None},
        "UnitType": f"{d['bedrooms']}x{int(d['bathrooms'])}" if unit else None,
        "Bedrooms": d.get("bedrooms") if unit else None, "Bathrooms": d.get("bathrooms") if unit else None,
        "SqFt": d.get("square_feet") if unit else None, "MarketRent": d.get("market_rent") if unit else None,
        "UnitStatus": YARDI_UNIT_STATUS[d["occupancy"]] if unit else None,
        "UpdateDate": yardi_time(e.modified_ms), "IsDeleted": e.deleted,
    }


def yardi_resident(e: Entity) -> Record:
    d, inv = e.data, e.invalid
    return {
        "Identification": {"IDValue": e.source_id, "IDType": "Resident", "OrganizationName": "Yardi"},
        "PropertyCode": d["property_code"], "UnitCode": d["unit_code"],
        "Name": {"FirstName": d["first_name"], "MiddleName": None,
                 "LastName": None if inv == "missing_required" else d["last_name"]},
        "Address": {"Address1": None, "Address2": None, "City": None, "State": None, "PostalCode": None,
                    "Country": "US", "Email": _bad_email(d["email"]) if inv == "bad_email" else d["email"]},
        "Phone": [{"PhoneType": "cell", "PhoneNumber": f"({d['phone'][2:5]}) {d['phone'][5:8]}-{d['phone'][8:]}"}],
        "CustomerStatus": YARDI_CUSTOMER_STATUS[d["status"]],
        "LeaseFromDate": yardi_date(d["move_in_ms"]),
        "LeaseToDate": yardi_date(d["move_in_ms"] + 365 * 86_400_000),
        "MoveInDate": "13/45/2025" if inv == "malformed_date" else yardi_date(d["move_in_ms"]),
        "MoveOutDate": yardi_date(d["move_out_ms"]),
        "UpdateDate": yardi_time(e.modified_ms), "IsDeleted": e.deleted,
    }


def yardi_service_request(e: Entity) -> Record:
    d, inv = e.data, e.invalid
    return {
        "ServiceRequestId": e.source_id, "PropertyCode": d["property_code"], "UnitCode": d["unit_code"],
        "TenantCode": d["resident_source_id"],
        "Category": _category(inv, "yardi", YARDI_CATEGORY[d["category"]]), "SubCategory": d["subcategory"],
        "Priority": YARDI_PRIORITY[d["priority"]], "CurrentStatus": YARDI_STATUS[d["status"]],
        "StatusHistory": [{"Status": YARDI_STATUS[s], "Date": yardi_time(t), "UpdatedBy": "maint.desk"}
                          for s, t in d["history"]],
        "BriefDescription": d["description"][:40], "FullDescription": d["description"],
        "RequestorName": d["requestor_name"], "RequestorPhoneNumber": d["requestor_phone"],
        "RequestorEmail": _bad_email(d["requestor_email"]) if inv == "bad_email" else d["requestor_email"],
        "HasPermissionToEnter": d["permission_to_enter"], "AccessNotes": d["access_notes"],
        "ServiceRequestDate": "2025-02-30T25:61:00" if inv == "malformed_date" else yardi_time(d["requested_ms"]),
        "CompletedDate": yardi_time(d["completed_ms"]),
        "UpdateDate": yardi_time(e.modified_ms), "IsDeleted": e.deleted,
    }


def _category(invalid: str | None, source: str, value: str) -> str | None:
    if invalid == "missing_required":
        return None
    if invalid == "unknown_category":
        return UNKNOWN_CATEGORY[source]
    return value


# -- RealPage ------------------------------------------------------------------------
def realpage_location(e: Entity) -> Record:
    d, unit, tz = e.data, e.data["kind"] == "unit", e.data["time_zone"]
    return {
        "locationId": e.source_id, "locationType": "unit" if unit else "property",
        "propertyCode": d["property_code"], "unitNumber": d["unit_code"], "propertyName": d["name"],
        "address": {"street1": d["street"], "street2": f"Apt {d['unit_code']}" if unit else None,
                    "city": None if e.invalid == "missing_required" else d["city"], "state": d["state"],
                    "zip": d["postal_code"], "country": "US"},
        "bedrooms": d.get("bedrooms") if unit else None, "bathrooms": d.get("bathrooms") if unit else None,
        "squareFeet": d.get("square_feet") if unit else None,
        "marketRent": float(d["market_rent"]) if unit else None,
        "occupancyStatus": RP_OCCUPANCY[d["occupancy"]] if unit else None,
        "timeZone": tz, "lastModifiedDate": local_time(e.modified_ms, tz), "isDeleted": e.deleted,
    }


def realpage_resident(e: Entity) -> Record:
    d, inv, tz = e.data, e.invalid, e.data["time_zone"]
    return {
        "residentId": e.source_id, "propertyCode": d["property_code"], "unitNumber": d["unit_code"],
        "firstName": d["first_name"], "lastName": None if inv == "missing_required" else d["last_name"],
        "email": _bad_email(d["email"]) if inv == "bad_email" else d["email"],
        "mobilePhone": f"{d['phone'][2:5]}-{d['phone'][5:8]}-{d['phone'][8:]}", "homePhone": None,
        "leaseStatus": RP_LEASE[d["status"]],
        "moveInDate": "2025-02-30" if inv == "malformed_date" else iso_date(d["move_in_ms"]),
        "moveOutDate": iso_date(d["move_out_ms"]),
        "timeZone": tz, "lastModifiedDate": local_time(e.modified_ms, tz), "isDeleted": e.deleted,
    }


def realpage_service_request(e: Entity) -> Record:
    d, inv, tz = e.data, e.invalid, e.data["time_zone"]
    return {
        "workOrderId": e.source_id, "propertyCode": d["property_code"], "unitNumber": d["unit_code"],
        "residentId": d["resident_source_id"],
        "category": _category(inv, "realpage", RP_CATEGORY[d["category"]]), "subCategory": d["subcategory"],
        "priority": RP_PRIORITY[d["priority"]], "status": RP_STATUS[d["status"]],
        "problemDescription": d["description"], "requesterName": d["requestor_name"],
        "requesterPhone": d["requestor_phone"],
        "requesterEmail": _bad_email(d["requestor_email"]) if inv == "bad_email" else d["requestor_email"],
        "permissionToEnter": d["permission_to_enter"], "entryNotes": d["access_notes"],
        "createdDate": "2025-13-01T10:00:00" if inv == "malformed_date" else local_time(d["requested_ms"], tz),
        "completedDate": local_time(d["completed_ms"], tz),
        "timeZone": tz, "lastModifiedDate": local_time(e.modified_ms, tz), "isDeleted": e.deleted,
    }


def realpage_attachment(e: Entity) -> Record:
    d, tz = e.data, e.data["time_zone"]
    return {
        "attachmentId": e.source_id, "workOrderId": d["service_request_source_id"], "propertyCode": d["property_code"],
        "fileName": d["file_name"], "contentType": d["content_type"], "fileSize": d["size_bytes"],
        "downloadUrl": None if e.invalid == "missing_required" else d["url"],
        "uploadedDate": local_time(d["uploaded_ms"], tz),
        "timeZone": tz, "lastModifiedDate": local_time(e.modified_ms, tz), "isDeleted": e.deleted,
    }


# -- Insight -------------------------------------------------------------------------
def _deleted_at(e: Entity) -> str | None:
    return rfc3339(e.modified_ms) if e.deleted else None


def insight_location(e: Entity) -> Record:
    d, unit = e.data, e.data["kind"] == "unit"
    return {
        "location_id": e.source_id, "kind": "unit" if unit else "property",
        "property_ref": d["property_code"], "unit_ref": d["unit_code"], "display_name": d["name"],
        "street": d["street"], "city": None if e.invalid == "missing_required" else d["city"],
        "region": d["state"], "postal": d["postal_code"], "country_code": "US",
        "beds": d.get("bedrooms") if unit else None, "baths": d.get("bathrooms") if unit else None,
        "sqft": d.get("square_feet") if unit else None,
        "rent_cents": int(float(d["market_rent"]) * 100) if unit else None,
        "occupancy": d["occupancy"] if unit else None,
        "updated_at": rfc3339(e.modified_ms), "deleted_at": _deleted_at(e),
    }


def insight_resident(e: Entity) -> Record:
    d, inv = e.data, e.invalid
    return {
        "occupant_id": e.source_id, "property_ref": d["property_code"], "unit_ref": d["unit_code"],
        "given_name": d["first_name"], "family_name": None if inv == "missing_required" else d["last_name"],
        "contact": {"email": _bad_email(d["email"]) if inv == "bad_email" else d["email"], "phone": d["phone"]},
        "occupancy_status": INSIGHT_OCCUPANCY[d["status"]],
        "move_in": "01-02-2025x" if inv == "malformed_date" else iso_date(d["move_in_ms"]),
        "move_out": iso_date(d["move_out_ms"]),
        "updated_at": rfc3339(e.modified_ms), "deleted_at": _deleted_at(e),
    }


def insight_service_request(e: Entity) -> Record:
    d, inv = e.data, e.invalid
    return {
        "ticket_id": e.source_id, "property_ref": d["property_code"], "unit_ref": d["unit_code"],
        "occupant_id": d["resident_source_id"],
        "category_code": _category(inv, "insight", INSIGHT_CATEGORY[d["category"]]),
        "summary": d["subcategory"], "details": d["description"], "priority": INSIGHT_PRIORITY[d["priority"]],
        "state": INSIGHT_STATE[d["status"]], "contact_name": d["requestor_name"], "contact_phone": d["requestor_phone"],
        "contact_email": _bad_email(d["requestor_email"]) if inv == "bad_email" else d["requestor_email"],
        "entry_permitted": d["permission_to_enter"], "entry_notes": d["access_notes"],
        "opened_at": "yesterday at noon" if inv == "malformed_date" else rfc3339(d["requested_ms"]),
        "closed_at": rfc3339(d["completed_ms"]),
        "updated_at": rfc3339(e.modified_ms), "deleted_at": _deleted_at(e),
    }


# -- Lessen360 -----------------------------------------------------------------------
def lessen_service_request(e: Entity) -> Record:
    d, inv = e.data, e.invalid
    return {
        "workOrderId": e.source_id, "propertyCode": d["property_code"], "unitCode": d["unit_code"],
        "resident": {"fullName": d["requestor_name"], "phone": d["requestor_phone"],
                     "email": _bad_email(d["requestor_email"]) if inv == "bad_email" else d["requestor_email"]},
        "trade": _category(inv, "lessen360", LESSEN_TRADE[d["category"]]), "task": d["subcategory"],
        "urgency": LESSEN_URGENCY[d["priority"]], "status": LESSEN_STATUS[d["status"]],
        "description": d["description"], "permissionToEnter": d["permission_to_enter"],
        "accessInstructions": d["access_notes"], "createdAtMs": d["requested_ms"], "completedAtMs": d["completed_ms"],
        "updatedAtMs": e.modified_ms, "archived": e.deleted,
    }


def lessen_attachment(e: Entity) -> Record:
    d = e.data
    return {
        "attachmentId": e.source_id, "workOrderId": d["service_request_source_id"], "fileName": d["file_name"],
        "mimeType": d["content_type"], "sizeBytes": d["size_bytes"],
        "url": None if e.invalid == "missing_required" else d["url"], "uploadedAtMs": d["uploaded_ms"],
        "updatedAtMs": e.modified_ms, "archived": e.deleted,
    }


RENDERERS: dict[tuple[str, str], Callable[[Entity], Record]] = {
    ("yardi", "location"): yardi_location,
    ("yardi", "resident"): yardi_resident,
    ("yardi", "service_request"): yardi_service_request,
    ("realpage", "location"): realpage_location,
    ("realpage", "resident"): realpage_resident,
    ("realpage", "service_request"): realpage_service_request,
    ("realpage", "attachment"): realpage_attachment,
    ("insight", "location"): insight_location,
    ("insight", "resident"): insight_resident,
    ("insight", "service_request"): insight_service_request,
    ("lessen360", "service_request"): lessen_service_request,
    ("lessen360", "attachment"): lessen_attachment,
}


def render(entity: Entity) -> Record:
    """The entity as its source serves it."""
    return RENDERERS[(entity.source, entity.entity_type)](entity)
