"""The generated world: deterministic, shared across sources, with the requested volume,
change behaviour and invalid records."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from syncflow.connectors.schemas import check_record, load_schema, modified_ms_of, source_id_of
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import BASE_TIME_MS, apply_changes, generate_world
from syncflow.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "avro_schemas"


def snapshot(world) -> list[tuple]:
    return [(e.source, e.entity_type, e.source_id, e.modified_ms, e.deleted, e.invalid, str(render(e)))
            for e in world.entities.values()]


def test_same_seed_same_world_and_same_changes() -> None:
    a, b = generate_world(3, 60, 0.1), generate_world(3, 60, 0.1)
    apply_changes(a, "yardi", 20)
    apply_changes(b, "yardi", 20)
    assert snapshot(a) == snapshot(b)
    assert snapshot(generate_world(4, 60, 0.1)) != snapshot(generate_world(3, 60, 0.1))


@pytest.mark.parametrize("volume", [1, 40, 300])
def test_volume_is_the_number_of_units(volume: int) -> None:
    world = generate_world(1, volume)
    units = [e for e in world.entities.values() if e.entity_type == "location" and e.data["kind"] == "unit"]
    assert len(units) == max(volume, 3)
    assert {p.source for p in world.entities.values() if p.entity_type == "location"} == {"yardi", "realpage", "insight"}


def test_lessen360_work_orders_name_yardi_or_realpage_units() -> None:
    world = generate_world(2, 120)
    units = {(e.data["property_code"], e.data["unit_code"]): e.source for e in world.entities.values()
             if e.entity_type == "location" and e.data["kind"] == "unit"}
    orders = [render(e) for e in world.of("lessen360", "service_request")]
    assert orders
    assert all(units[(o["propertyCode"], o["unitCode"])] in ("yardi", "realpage") for o in orders)


def test_every_rendered_record_fits_its_schema_and_names_its_id_and_time() -> None:
    world = generate_world(5, 80, invalid_rate=0.2)
    for source in ("yardi", "realpage", "insight", "lessen360"):
        apply_changes(world, source, 30)
    for e in world.entities.values():
        record = render(e)
        assert check_record(load_schema(SCHEMAS, e.source, e.entity_type), record) == [], (e.source, e.entity_type)
        assert source_id_of(e.source, e.entity_type, record) == e.source_id
        assert modified_ms_of(e.source, record) == e.modified_ms


def test_changes_move_modified_time_forward_and_delete_some() -> None:
    world = generate_world(6, 60)
    before = world.clock_ms
    changed = apply_changes(world, "realpage", 60)
    assert len(changed) == 60 and world.clock_ms > before >= BASE_TIME_MS
    assert all(e.modified_ms > before for e in changed)
    assert any(e.deleted for e in changed)
    assert all(e.source == "realpage" for e in changed)
    deleted = next(e for e in changed if e.deleted)
    assert render(deleted)["isDeleted"] is True


def test_invalid_rate_marks_records_with_the_fault_they_carry() -> None:
    world = generate_world(8, 400, invalid_rate=0.25)
    kinds = Counter(e.invalid for e in world.entities.values())
    total = sum(kinds.values())
    assert 0.15 < (total - kinds[None]) / total < 0.35
    assert set(kinds) - {None} == {"bad_email", "missing_required", "unknown_category", "malformed_date"}
    for e in world.entities.values():
        record = render(e)
        if e.invalid == "bad_email" and e.source == "yardi" and e.entity_type == "resident":
            assert "@" not in record["Address"]["Email"]
        if e.invalid == "missing_required" and e.entity_type == "service_request" and e.source == "insight":
            assert record["category_code"] is None
        if e.invalid == "unknown_category" and e.source == "lessen360":
            assert record["trade"] == "ASTRONOMY"
    assert not any(e.invalid for e in generate_world(8, 400).entities.values())


def test_world_remembers_every_record_ever_served_invalid() -> None:
    from syncflow.emulators.sources.world import apply_changes, generate_world

    world = generate_world(seed=3, volume=60, invalid_rate=0.3)
    initially = {k for k, e in world.entities.items() if e.invalid}
    assert initially and initially <= world.invalid_ever
    for source in ("yardi", "realpage", "insight", "lessen360"):
        apply_changes(world, source, 80)
    now_invalid = {k for k, e in world.entities.items() if e.invalid}
    assert now_invalid <= world.invalid_ever
    assert initially <= world.invalid_ever


def test_a_sources_slice_is_what_a_scan_of_the_world_finds_after_changes() -> None:
    world = generate_world(seed=12, volume=90)
    for source in ("yardi", "realpage", "insight", "lessen360"):
        apply_changes(world, source, 40)
    for source in ("yardi", "realpage", "insight", "lessen360"):
        scan = [e for e in world.entities.values() if e.source == source]
        assert world.of(source) == scan
        for entity_type in ("location", "resident", "service_request", "attachment"):
            assert world.of(source, entity_type) == [e for e in scan if e.entity_type == entity_type]
    replacement = dataclasses.replace(world.of("yardi", "resident")[3], data={"first_name": "Replaced"})
    world.add(replacement)
    assert world.of("yardi", "resident")[3] is replacement
    assert sum(e is replacement for e in world.of("yardi")) == 1
