"""Every record the source emulators render, valid or carrying a known fault, through the
real rules: valid ones become canonical entities, faulty ones fail on the matching rule."""

from __future__ import annotations

import pytest
from rules_test_helpers import assert_canonical

from syncflow.emulators.sources import render as render_module
from syncflow.emulators.sources import world as world_module
from syncflow.errors import ValidationError

# The field each kind of fault must be reported on, by entity type.
FAULT_FIELDS = {
    "bad_email": {"resident": "email", "service_request": "requestor_email"},
    "missing_required": {"location": "city", "resident": "last_name", "service_request": "category",
                         "attachment": "url"},
    "unknown_category": {"service_request": "category"},
    "malformed_date": {"resident": "move_in_date", "service_request": "requested_at"},
}


def test_every_emulated_record(engine):
    world = world_module.generate_world(seed=11, volume=120, invalid_rate=0.25)
    for source in ("yardi", "realpage", "insight", "lessen360"):
        world_module.apply_changes(world, source, 40)  # updates and deletes too
    seen = {"valid": 0, "invalid": 0, "deleted": 0}
    for entity in world.entities.values():
        record = render_module.render(entity)
        if entity.deleted:
            result = engine.transform(entity.source, entity.entity_type, record)
            assert result.deleted
            seen["deleted"] += 1
        elif entity.invalid is None:
            result = engine.transform(entity.source, entity.entity_type, record)
            assert_canonical(result)
            seen["valid"] += 1
        else:
            with pytest.raises(ValidationError) as caught:
                engine.transform(entity.source, entity.entity_type, record)
            fields = {e.field for e in caught.value.errors}
            assert FAULT_FIELDS[entity.invalid][entity.entity_type] in fields, (entity, caught.value)
            seen["invalid"] += 1
    assert all(seen.values()), seen
