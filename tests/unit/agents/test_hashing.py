"""content_hash: equal for formatting-only differences, different for real changes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from syncflow.agents.hashing import content_hash

UTC = timezone.utc


def record() -> dict:
    return {
        "ServiceRequestId": "40001", "PropertyCode": "maple01", "UnitCode": "101", "Category": "Plumbing",
        "Priority": "High", "HasPermissionToEnter": True, "Rent": Decimal("1450.00"), "Baths": 1.5,
        "Requested": datetime(2026, 3, 1, 14, 5, tzinfo=UTC), "MoveIn": date(2025, 1, 15), "Note": None,
        "Address": {"City": "Austin", "State": "TX"},
        "StatusHistory": [{"Status": "Open", "Date": "2026-03-01T14:05:00"}],
    }


def test_stable_and_sha256_hex():
    assert content_hash(record()) == content_hash(record())
    assert len(content_hash(record())) == 64 and int(content_hash(record()), 16) >= 0


def test_formatting_does_not_count():
    base = content_hash(record())
    same = record()
    reordered = dict(reversed(list(same.items())))
    reordered["Address"] = {"State": "TX", "City": " Austin "}
    reordered.pop("Note")  # missing key == None
    reordered["Extra"] = "   "  # blank text == missing
    reordered["Rent"] = 1450  # equal number, other type
    reordered["Baths"] = Decimal("1.50")
    reordered["Requested"] = datetime(2026, 3, 1, 8, 5, tzinfo=ZoneInfo("America/Chicago"))  # same instant
    assert content_hash(reordered) == base


def test_real_changes_count():
    base = content_hash(record())
    for key, value in [("Priority", "Low"), ("Rent", Decimal("1450.01")), ("HasPermissionToEnter", False),
                       ("Requested", datetime(2026, 3, 1, 14, 5, tzinfo=UTC) + timedelta(seconds=1)),
                       ("Address", {"City": "Austin", "State": "CO"}), ("MoveIn", date(2025, 1, 16)),
                       ("StatusHistory", [])]:
        changed = record()
        changed[key] = value
        assert content_hash(changed) != base, key


def test_types_are_not_confused():
    assert content_hash({"a": 1}) != content_hash({"a": "1"})
    assert content_hash({"a": True}) != content_hash({"a": 1})
    assert content_hash({"a": [1, 2]}) != content_hash({"a": [2, 1]})
    assert content_hash({"a": {"b": 1}}) != content_hash({"a.b": 1})
