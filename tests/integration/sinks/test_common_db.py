"""The common database on the real PostgreSQL: migrations into the test's own schema, and
upsert_versions' guarantees (no version for an unchanged hash, gap-free versions, change
types, changed fields, placeholders for parents that arrive later, the outbox marker)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text

from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.migrate import alembic_config, migrate
from syncflow.sinks.common_db.models import DataVersion, Location, ResidentialDetails, ServiceRequest
from syncflow.sinks.common_db.repository import lock_unpublished, mark_published, upsert_versions
from syncflow.model import EntityRecord
from syncflow.settings import Settings

pytestmark = pytest.mark.integration



def unit(entity_id: str, *, name: str = "Unit 1", rent: str = "1200.50", deleted: bool = False, source: str = "yardi") -> EntityRecord:
    entity = {
        "entity_id": entity_id,
        "location_type": "unit",
        "property_code": "P1",
        "unit_code": "U1",
        "parent_location_id": "loc-prop",
        "name": name,
        "country": "US",
        "status": "active",
        "residential": {"bedrooms": 2, "bathrooms": 1.5, "square_feet": 800, "market_rent": Decimal(rent), "occupancy_status": "vacant"},
        "source_system": source,
        "source_id": "u-1",
        "source_updated_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "deleted": deleted,
    }
    return EntityRecord(
        "location", entity_id, entity, f"h-{name}-{rent}-{deleted}", source, "u-1", priority=5,
        references={"location": "loc-prop"}, deleted=deleted,
    )


def sr(entity_id: str, location_id: str, resident_id: str | None, status: str = "open") -> EntityRecord:
    entity = {
        "entity_id": entity_id, "location_id": location_id, "resident_id": resident_id, "category": "plumbing",
        "priority": 1, "status": status, "requested_at": datetime(2024, 5, 2, tzinfo=UTC),
        "source_system": "lessen360", "source_id": "wo-1", "deleted": False,
    }
    refs = {"location": location_id} | ({"resident": resident_id} if resident_id else {})
    return EntityRecord("service_request", entity_id, entity, f"h-{status}", "lessen360", "wo-1", priority=1, references=refs)


def test_migrate_is_idempotent_and_in_own_schema(settings: Settings, engine: Engine) -> None:
    migrate(settings)
    with engine.connect() as conn:
        tables = set(conn.execute(text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": settings.database_schema}).scalars())
        version = conn.execute(text(f'SELECT version_num FROM "{settings.database_schema}".alembic_version')).scalar()
    assert {"sync_master_data", "data_versions", "locations", "residential_details", "residents", "service_requests", "attachments", "target_sync_state"} <= tables
    heads = ScriptDirectory.from_config(alembic_config(engine, settings.database_schema)).get_heads()
    assert [version] == heads


def test_create_unchanged_update_delete(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        first = upsert_versions(s, [unit("loc-u1")])
    assert [(v.version_number, v.change_type) for v in first] == [(1, "create")]
    assert "name" in first[0].changed_fields and first[0].snapshot["source_updated_at"] == "2024-05-01T12:00:00Z"
    assert first[0].snapshot["residential"]["market_rent"] == "1200.50"

    with unit_of_work(engine) as s:
        assert upsert_versions(s, [unit("loc-u1")]) == []

    with unit_of_work(engine) as s:
        second = upsert_versions(s, [unit("loc-u1", name="Unit One", rent="1300.00")])
    assert [(v.version_number, v.change_type) for v in second] == [(2, "update")]
    assert second[0].changed_fields == ["name", "residential"]

    with unit_of_work(engine) as s:
        third = upsert_versions(s, [unit("loc-u1", name="Unit One", rent="1300.00", deleted=True)])
    assert [(v.version_number, v.change_type, v.changed_fields) for v in third] == [(3, "delete", ["deleted"])]

    with unit_of_work(engine) as s:
        row = s.get(Location, "loc-u1")
        parent = s.get(Location, "loc-prop")
        details = s.get(ResidentialDetails, "loc-u1")
        versions = s.execute(select(DataVersion.version_number).where(DataVersion.entity_id == "loc-u1").order_by(DataVersion.version_number)).scalars().all()
    assert row is not None and row.current_version == 3 and row.deleted and row.name == "Unit One"
    assert parent is not None and parent.placeholder and row.parent_location_id == "loc-prop"
    assert details is not None and details.market_rent == Decimal("1300.00")
    assert versions == [1, 2, 3]


def test_batch_applies_same_entity_in_order_and_skips_repeats(engine: Engine) -> None:
    batch = [unit("loc-u2", name="A"), unit("loc-u2", name="A"), unit("loc-u2", name="B"), unit("loc-u3", name="C")]
    with unit_of_work(engine) as s:
        made = upsert_versions(s, batch)
    assert [(v.entity_id, v.version_number, v.change_type, v.item_index) for v in made] == [
        ("loc-u2", 1, "create", 0), ("loc-u2", 2, "update", 2), ("loc-u3", 1, "create", 3)
    ]
    with unit_of_work(engine) as s:
        assert s.get(Location, "loc-u2").name == "B"  # type: ignore[union-attr]


def test_child_before_parent_gets_placeholders_then_the_real_parent_fills_them(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        upsert_versions(s, [sr("sr-1", "loc-u9", "res-9")])
    with unit_of_work(engine) as s:
        loc = s.get(Location, "loc-u9")
        request = s.get(ServiceRequest, "sr-1")
        assert loc is not None and loc.placeholder and loc.current_version == 0
        assert request is not None and request.resident_id == "res-9" and request.requested_at == datetime(2024, 5, 2, tzinfo=UTC)
    with unit_of_work(engine) as s:
        made = upsert_versions(s, [unit("loc-u9")])
    assert [(v.version_number, v.change_type) for v in made] == [(1, "create")]
    with unit_of_work(engine) as s:
        loc = s.get(Location, "loc-u9")
        assert loc is not None and not loc.placeholder and loc.name == "Unit 1"


def test_two_sources_of_one_entity_share_one_version_sequence(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        upsert_versions(s, [unit("loc-u5", source="yardi")])
    with unit_of_work(engine) as s:
        made = upsert_versions(s, [unit("loc-u5", source="lessen360"), unit("loc-u5", source="yardi")])
    assert [(v.version_number, v.source_system) for v in made] == [(2, "lessen360")]


def test_outbox_lists_unpublished_in_version_order_until_marked(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        upsert_versions(s, [unit("loc-u7", name="A"), unit("loc-u7", name="B"), unit("loc-u8")])
    with unit_of_work(engine) as s:
        pending = lock_unpublished(s, [("location", "loc-u7")])
        assert [(v.entity_id, v.version_number) for v in pending] == [("loc-u7", 1), ("loc-u7", 2)]
        mark_published(s, [v.id for v in pending])
    with unit_of_work(engine) as s:
        rest = lock_unpublished(s)
    assert [(v.entity_id, v.version_number) for v in rest] == [("loc-u8", 1)]


def test_dates_and_resident_rows(engine: Engine) -> None:
    resident = EntityRecord(
        "resident", "res-1",
        {"entity_id": "res-1", "location_id": "loc-x", "first_name": "Ada", "last_name": "L", "move_in_date": date(2024, 1, 2),
         "status": "current", "source_system": "yardi", "source_id": "r1", "deleted": False},
        "h1", "yardi", "r1",
    )
    with unit_of_work(engine) as s:
        made = upsert_versions(s, [resident])
    assert made[0].snapshot["move_in_date"] == "2024-01-02"
    with unit_of_work(engine) as s:
        row = s.execute(text("SELECT move_in_date, location_id FROM residents WHERE entity_id = 'res-1'")).one()
    assert row == (date(2024, 1, 2), "loc-x")


def test_a_large_mixed_batch_returns_each_version_with_its_own_row(engine: Engine) -> None:
    """One statement per table for the whole batch: every returned version carries the id and
    creation time of its own data_versions row, whatever order the database returns them in."""
    batch = [unit(f"loc-b{i:03d}", name=f"Unit {i}") for i in range(120)]
    batch += [sr(f"sr-b{i:03d}", f"loc-b{i:03d}", None) for i in range(0, 120, 3)]
    batch += [unit("loc-b005", name="Unit 5 again"), unit("loc-b007", name="Unit 7", deleted=True)]
    with unit_of_work(engine) as s:
        made = upsert_versions(s, batch)
    assert len(made) == len(batch)
    with unit_of_work(engine) as s:
        rows = s.execute(select(DataVersion.id, DataVersion.entity_id, DataVersion.version_number, DataVersion.trace_id,
                                DataVersion.master_data_id, DataVersion.created_date)).all()
        b005 = s.get(Location, "loc-b005")
        b007 = s.get(Location, "loc-b007")
        attempts = s.execute(text("SELECT sync_attempt_count FROM sync_master_data WHERE entity_id = 'loc-b005'")).scalar()
    by_id = {r.id: r for r in rows}
    assert all((by_id[v.id].entity_id, by_id[v.id].version_number, by_id[v.id].created_date) ==
               (v.entity_id, v.version_number, v.created_date) for v in made)
    assert [(v.version_number, v.change_type) for v in made if v.entity_id == "loc-b005"] == [(1, "create"), (2, "update")]
    assert b005 is not None and b005.current_version == 2 and b005.name == "Unit 5 again" and not b005.placeholder
    assert b007 is not None and b007.current_version == 2 and b007.deleted
    assert attempts == 1  # one master row per (entity, source) per batch, written once with its last record
    assert len({r.master_data_id for r in rows if r.entity_id == "loc-b005"}) == 1
    with unit_of_work(engine) as s:
        assert [v.version_number for v in upsert_versions(s, [unit("loc-b005", name="Unit 5 later")])] == [3]
        master = s.execute(text("SELECT sync_attempt_count, data_hash FROM sync_master_data "
                                "WHERE entity_id = 'loc-b005'")).one()
    assert tuple(master) == (2, "h-Unit 5 later-1200.50-False")


def test_a_retried_batch_after_a_rollback_writes_the_same_versions(engine: Engine) -> None:
    batch = [unit("loc-r1"), sr("sr-r1", "loc-r1", "res-r1")]
    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        upsert_versions(s, batch)
        raise RuntimeError("the publish step failed")  # rolled back with everything it wrote
    with unit_of_work(engine) as s:
        made = upsert_versions(s, batch)
        again = upsert_versions(s, batch)
        resident = s.execute(text("SELECT placeholder, current_version FROM residents WHERE entity_id = 'res-r1'")).one()
    assert [(v.entity_id, v.version_number) for v in made] == [("loc-r1", 1), ("sr-r1", 1)] and again == []
    assert tuple(resident) == (True, 0)


def test_named_counts_read_what_was_written(settings: Settings, engine: Engine) -> None:
    """sinks/common_db/counts.py: the queries status, metrics and the demo's reconciliation use."""
    from syncflow.sinks.common_db import counts

    with unit_of_work(engine) as s:
        upsert_versions(s, [unit("loc-c1"), unit("loc-c1", name="Unit One")])
    with unit_of_work(engine) as s:
        published = lock_unpublished(s, [("location", "loc-c1")])
        mark_published(s, [published[0].id])
    with engine.connect() as conn:
        assert counts.version_counts(conn) == (2, 1, 1)
        assert counts.version_count(conn) == 2 and counts.version_gaps(conn) == []
        assert counts.outbox_backlog(conn)[0] == 1
        assert counts.latest_hash_per_source(conn) == {("location", "loc-c1", "yardi"): "h-Unit One-1200.50-False"}
        latest = counts.latest_of_entities(conn, ["location"])
        assert latest == {("location", "loc-c1"): (2, "update", {"location": "loc-prop"})}
        assert counts.latest_of_entities(conn, ["location"], not_from="yardi") == {}
        rows = counts.status_rows(conn, settings.database_schema)
    assert ("sync-in", "location", "yardi", "applied", 1, None) in rows
    assert {"data_versions", "sync_master_data", "entity_sync_status"} <= counts.tables_in(engine, settings.database_schema)
    assert counts.unpublished_in(engine, settings.database_schema) == 1
