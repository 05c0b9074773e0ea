"""Single-core speed of two sync-in parts without any service: content hashing and the rules
engine (the real sync_in.yaml on a Yardi service request, and the synthetic acme rules the
unit tests use). Printed, not asserted: a shared machine's figures vary too much for a test.

    .venv/bin/python bench/parts.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncflow.agents.hashing import content_hash  # noqa: E402
from syncflow.agents.rules import RulesEngine  # noqa: E402

RULES_FILE = REPO / "syncflow" / "agents" / "rules" / "sync_in.yaml"
ACME_RULES = REPO / "tests" / "unit" / "agents" / "rules" / "data" / "acme_rules.yaml"


def hashed_record() -> dict:
    return {
        "ServiceRequestId": "40001", "PropertyCode": "maple01", "UnitCode": "101", "Category": "Plumbing",
        "Priority": "High", "HasPermissionToEnter": True, "Rent": Decimal("1450.00"), "Baths": 1.5,
        "Requested": datetime(2026, 3, 1, 14, 5, tzinfo=timezone.utc), "Note": None,
        "Address": {"City": "Austin", "State": "TX"},
        "StatusHistory": [{"Status": "Open", "Date": "2026-03-01T14:05:00"}],
    }  # fmt: skip


def yardi_service_request() -> dict:
    return {
        "ServiceRequestId": "40001", "PropertyCode": "maple01", "UnitCode": "101", "TenantCode": "t0001234",
        "Category": "Plumbing", "SubCategory": "Leaking Faucet", "Priority": "High", "CurrentStatus": "In Progress",
        "StatusHistory": [{"Status": "Open", "Date": "2026-03-01T14:05:00", "UpdatedBy": "maint.desk"}],
        "BriefDescription": "Leak", "FullDescription": "Water under the kitchen sink",
        "RequestorName": "Ana Garcia", "RequestorPhoneNumber": "+1 512 555 0142",
        "RequestorEmail": "ANA.GARCIA@example.com", "HasPermissionToEnter": True, "AccessNotes": "Dog in unit",
        "ServiceRequestDate": "2026-03-01T14:05:00", "CompletedDate": None,
        "UpdateDate": "2026-03-02T08:00:00", "IsDeleted": False,
    }  # fmt: skip


def acme_request() -> dict:
    return {
        "id": "A-1", "site": {"code": " p1 ", "unit": "101", "tz": "America/New_York"},
        "customer": {"id": "c9", "name": {"first": "ana", "last": "Lopez"}}, "kind": "Pipes",
        "tags": ["leak", "kitchen"], "urgency": "high", "state": "Open",
        "contacts": [{"type": "phone", "value": "512.555.0142"}, {"type": "email", "value": " Ana@Example.COM "}],
        "entry": "Y", "opened": "01.03.2026 09:30", "closed": None, "modified_ms": 1_772_000_000_000,
        "meta": {"op": "upsert"},
    }  # fmt: skip


def best_rate(work: Callable[[], object], n: int, rounds: int = 3) -> float:
    """Calls per second, the best of `rounds` runs of `n` calls (the machine is shared)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            work()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="calls per round")
    args = parser.parse_args()

    sample = hashed_record()
    print(f"content_hash: {best_rate(lambda: content_hash(sample), args.records):,.0f} records/s on one core")
    engine, acme = RulesEngine.from_file(RULES_FILE), RulesEngine.from_file(ACME_RULES)
    for name, eng, record in (("yardi", engine, yardi_service_request()), ("acme", acme, acme_request())):
        rate = best_rate(lambda: eng.transform(name, "service_request", record), args.records // 10)
        print(f"rules {name} service_request: {rate:,.0f} records/s on one core")


if __name__ == "__main__":
    main()
