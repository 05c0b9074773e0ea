"""Per-target rules: canonical snapshot → ONE and Lessen360 payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncflow.errors import BadChangeEventError
from syncflow.model import ChangeEvent
from syncflow.agents.sync_out.transform import Transformer, lookup, map_fields
from syncflow.errors import ConfigError
from syncflow.settings import SyncOutSettings

RULES = SyncOutSettings().rules_file

SR = {
    "entity_id": "sr-1", "location_id": "loc-1", "resident_id": None, "category": "plumbing",
    "priority": 1, "status": "open", "description": "leak", "requested_at": 1_700_000_000_000,
    "requestor_name": "Ann", "permission_to_enter": True,
}


def sr_event(**kw: object) -> ChangeEvent:
    base: dict = dict(entity_type="service_request", entity_id="sr-1", version=2, change_type="update",
                      origin_source="yardi", origin_source_id="WO-9", priority=1, snapshot=SR)
    base.update(kw)
    return ChangeEvent(**base)


def test_one_work_order_payload() -> None:
    d = Transformer.from_file(RULES, "one").to_delivery(sr_event())
    assert (d.resource, d.op, d.idempotency_key) == ("work-orders", "upsert", "sr-1:2")
    assert d.payload is not None
    assert d.payload["locationExternalId"] == "loc-1"
    assert d.payload["category"] == "plumbing"
    assert d.payload["requestedAt"] == "2023-11-14T22:13:20Z"
    assert d.payload["requestor"] == {"name": "Ann", "phone": None, "email": None}


def test_lessen360_work_order_payload_uses_its_own_words() -> None:
    d = Transformer.from_file(RULES, "lessen360").to_delivery(sr_event())
    assert d.resource == "work_orders"
    assert d.payload is not None
    assert d.payload["trade"] == "plumbing"
    assert d.payload["urgency"] == "emergency"
    assert d.payload["location_external_id"] == "loc-1"


def test_delete_has_no_payload() -> None:
    d = Transformer.from_file(RULES, "one").to_delivery(sr_event(change_type="delete"))
    assert (d.op, d.payload) == ("delete", None)


def test_every_canonical_type_has_a_rule_for_both_targets() -> None:
    for target in ("one", "lessen360"):
        t = Transformer.from_file(RULES, target)
        assert all(t.takes(e) for e in ("location", "resident", "service_request", "attachment"))


def test_dates_and_nested_paths() -> None:
    snap = {"residential": {"bedrooms": 2}, "move_in_date": 19000}
    out = map_fields({"beds": "residential.bedrooms", "d": "date(move_in_date)", "x": "missing.path"}, snap)
    assert out == {"beds": 2, "d": "2022-01-08", "x": None}
    assert lookup({"a": 1}, "a.b") is None


def test_unknown_conversion_is_refused_at_load(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("one:\n  location:\n    resource: locations\n    fields:\n      a: nope(b)\n")
    with pytest.raises(ConfigError):
        Transformer.from_file(f, "one")
    with pytest.raises(ConfigError):
        Transformer.from_file(f, "absent")


def test_change_event_from_codec_record() -> None:
    rec = {"event_id": "sr-1:2", "entity_type": "service_request", "entity_id": "sr-1", "version": 2,
           "change_type": "update", "origin_source": "yardi", "origin_source_id": "WO-9", "priority": 1,
           "changed_fields": [], "snapshot": '{"entity_id": "sr-1"}', "references": {"location": "loc-1"},
           "occurred_at": 1000, "trace_id": None}
    ev = ChangeEvent.from_record(rec)
    assert (ev.event_id, ev.references, ev.snapshot, ev.occurred_at_ms) == ("sr-1:2", {"location": "loc-1"}, {"entity_id": "sr-1"}, 1000)
    with pytest.raises(BadChangeEventError):
        ChangeEvent.from_record({**rec, "snapshot": "{not json"})
