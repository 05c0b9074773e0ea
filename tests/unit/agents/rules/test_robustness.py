"""Whatever a source sends, transform() answers with a CanonicalRecord or a ValidationError;
and source records that went through Avro (the real wire path) transform the same."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime
from pathlib import Path

import fastavro
import pytest
from conftest import REPO
from rules_test_helpers import assert_canonical
from test_insight import insight_service_request
from test_lessen360 import lessen_attachment, lessen_work_order
from test_realpage import rp_attachment, rp_location, rp_resident, rp_service_request
from test_yardi import yardi_location, yardi_resident, yardi_service_request

from syncflow.errors import ValidationError

SAMPLES = {
    ("yardi", "location", "Location"): yardi_location,
    ("yardi", "resident", "Resident"): yardi_resident,
    ("yardi", "service_request", "ServiceRequest"): yardi_service_request,
    ("realpage", "location", "Location"): rp_location,
    ("realpage", "resident", "Resident"): rp_resident,
    ("realpage", "service_request", "ServiceRequest"): rp_service_request,
    ("realpage", "attachment", "Attachment"): rp_attachment,
    ("insight", "service_request", "ServiceRequest"): insight_service_request,
    ("lessen360", "service_request", "ServiceRequest"): lessen_work_order,
    ("lessen360", "attachment", "Attachment"): lessen_attachment,
}
ODD_VALUES = [None, "", "   ", 0, -1, 10**30, 1.5, float("nan"), True, [], [1, "x"], {}, {"a": {"b": None}},
              "\x00", "ü" * 500, datetime(2026, 1, 1), b"\xff"]


@pytest.mark.parametrize(("source", "entity_type", "name"), sorted(SAMPLES))
def test_avro_round_trip_of_the_source_record(engine, source, entity_type, name):
    schema = fastavro.parse_schema(json.loads((REPO / "avro_schemas" / "sources" / source / f"{name}.avsc").read_text()))
    sample = SAMPLES[(source, entity_type, name)]()
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, sample)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema)
    assert engine.transform(source, entity_type, decoded) == engine.transform(source, entity_type, sample)
    assert_canonical(engine.transform(source, entity_type, decoded))


def test_odd_values_never_raise_anything_but_validation_errors(engine):
    rng = random.Random(7)
    for (source, entity_type, _), factory in SAMPLES.items():
        for _ in range(150):
            record = factory()
            for key in rng.sample(sorted(record), k=rng.randint(1, 4)):
                record[key] = rng.choice(ODD_VALUES)
            try:
                result = engine.transform(source, entity_type, record)
            except ValidationError as exc:
                assert exc.errors and all(e.rule for e in exc.errors)
            else:
                assert_canonical(result)


def test_the_rules_file_path_in_settings_is_this_file():
    from syncflow.settings import SyncInSettings

    assert Path(SyncInSettings().rules_file).resolve() == (REPO / "syncflow/agents/rules/sync_in.yaml").resolve()
