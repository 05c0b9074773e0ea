"""`syncflow status` on an empty schema (tables not there yet) and a populated one."""

from __future__ import annotations

from collections.abc import Callable

import time

from sqlalchemy import text
from typer.testing import CliRunner

from syncflow.sinks.common_db.target_state import DeliveryFailed, Synced, SyncStateStore
from syncflow.cli import status
from syncflow.sinks.common_db.engine import make_engine, unit_of_work
from syncflow.sinks.common_db.migrate import migrate
from syncflow.sinks.common_db.repository import upsert_versions
from syncflow.model import EntityRecord
from syncflow.settings import Settings
from tests.integration.ops.conftest import consume_all, read_json

runner = CliRunner()


def test_empty_schema_says_the_tables_are_missing(cli_settings: Settings) -> None:
    result = runner.invoke(status.app, ["--json"])
    assert result.exit_code == 0, result.output
    body = read_json(result.stdout)
    assert body["missing_tables"] == ["sync_master_data", "entity_sync_status"]
    assert body["counts"] == []
    assert {g["group"] for g in body["lag"]} >= {cli_settings.sync_in.group_id, "sync-out.one", "sync-out.lessen360"}
    assert set(body["dlq_depth"]) == {"sync-in.dlq", "sync-out.one.dlq", "sync-out.lessen360.dlq"}
    human = runner.invoke(status.app, [])
    assert human.exit_code == 0 and "run the migrations" in human.stdout


def test_status_counts_what_sync_in_and_sync_out_really_wrote(cli_settings: Settings) -> None:
    """State built through the real write paths: sync-in's upsert_versions, sync-out's
    claim (before a call) and record (after it). An entity synced at v1 whose v2 arrived is
    pending again, whatever target_sync_state's own status column says."""
    migrate(cli_settings)
    engine = make_engine(cli_settings)
    with unit_of_work(engine) as s:
        upsert_versions(s, [location(i, "Unit") for i in range(4)])
    one, lessen = SyncStateStore(engine, "one", cli_settings.database_schema), SyncStateStore(engine, "lessen360", cli_settings.database_schema)
    keys = [("location", f"L{i}") for i in range(4)]
    claimed_at = time.monotonic()
    assert one.record_sending({k: 1 for k in keys}) == set(keys)  # all four handed to ONE
    one.record([Synced(keys[0], 1, "one-0"), Synced(keys[1], 1, "one-1")],
               [DeliveryFailed(keys[2], 1, "retry", 1, None, "503 from ONE")])  # L3 stays in flight
    assert lessen.record_sending({keys[0]: 1}) == {keys[0]}
    lessen.record([], [DeliveryFailed(keys[0], 1, "failed", 3, None, "422 from Lessen360")])
    with unit_of_work(engine) as s:
        upsert_versions(s, [location(1, "Unit renamed")])  # L1 v2: ONE holds only v1 now

    result = runner.invoke(status.app, ["--json"])
    assert result.exit_code == 0, result.output
    body = read_json(result.stdout)
    assert body["missing_tables"] == []
    counts = {(c["side"], c["entity_type"], c["system"], c["status"]): c for c in body["counts"]}
    assert counts[("sync-in", "location", "yardi", "applied")]["count"] == 4
    assert counts[("sync-out", "location", "one", "synced")]["count"] == 1  # L0
    assert counts[("sync-out", "location", "one", "pending")]["count"] == 2  # L1 (v2 new), L3 (in flight)
    assert counts[("sync-out", "location", "one", "retry")]["count"] == 1  # L2
    assert counts[("sync-out", "location", "lessen360", "failed")]["count"] == 1
    oldest = counts[("sync-out", "location", "one", "pending")]["oldest_age_s"]
    assert 0 <= oldest <= time.monotonic() - claimed_at + 1.0  # the oldest pending row's age, in seconds
    assert counts[("sync-out", "location", "one", "synced")]["oldest_age_s"] is None
    assert body["unpublished_versions"] == 5  # nothing published: no relay ran
    with engine.connect() as conn:  # what SQL users read
        view = dict(conn.execute(text("SELECT entity_id, status FROM entity_sync_status WHERE target = 'one'")).all())
    assert view == {"L0": "synced", "L1": "pending", "L2": "retry", "L3": "pending"}
    human = runner.invoke(status.app, [])
    assert human.exit_code == 0 and "sync status" in human.stdout
    engine.dispose()


def location(i: int, name: str) -> EntityRecord:
    entity = {"entity_id": f"L{i}", "location_type": "unit", "property_code": "P1", "unit_code": f"U{i}", "name": name,
              "country": "US", "status": "active", "source_system": "yardi", "source_id": f"u-{i}"}
    return EntityRecord("location", f"L{i}", entity, f"h-{name}", "yardi", f"u-{i}")


def test_lag_of_a_group_that_is_behind(cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str],
                                       monkeypatch) -> None:
    """The lag a status shows is the records a group has not read: here a group that read 2 of 5."""
    from syncflow.streams.admin import admin_client
    from syncflow.ops.status import lag_by_group
    from syncflow.streams.producer import OutgoingRecord, ReliableProducer

    topic, group = topic_factory("status"), unique("group")
    ReliableProducer(cli_settings).send_all([OutgoingRecord(topic, None, b"x") for _ in range(2)])
    consume_all(cli_settings, topic, group, expected=2)
    ReliableProducer(cli_settings).send_all([OutgoingRecord(topic, None, b"x") for _ in range(3)])
    [lag] = lag_by_group(admin_client(cli_settings), {group: [topic]})
    assert (lag.group, lag.lag, lag.partitions) == (group, 3, 1)


def test_dlq_depth_and_records_not_redriven_yet(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    from syncflow.cli import dlq
    from syncflow.streams.admin import admin_client
    from syncflow.ops.status import dlq_depth, dlq_not_redriven
    from tests.integration.ops.test_dlq import park
    from syncflow.errors import ValidationError

    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    for key in ("a", "b"):
        park(cli_settings, dlq_topic, original, key, ValidationError([]), "location")
    admin = admin_client(cli_settings)
    group = cli_settings.ops.redrive_group
    assert dlq_depth(admin, [dlq_topic]) == {dlq_topic: 2}
    assert dlq_not_redriven(admin, [dlq_topic], group) == {dlq_topic: 2}
    assert runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"]).exit_code == 0
    park(cli_settings, dlq_topic, original, "c", ValidationError([]), "location")
    assert dlq_depth(admin, [dlq_topic]) == {dlq_topic: 3}
    assert dlq_not_redriven(admin, [dlq_topic], group) == {dlq_topic: 1}


def test_status_shows_records_parked_for_a_reference_until_they_are_released(cli_settings: Settings) -> None:
    """Parked and released through sync-out's own calls (sinks/common_db/parked.py); the
    metric's read (`parked.waiting`, the `parked.<target>` backlog) says the same."""
    from syncflow.sinks.common_db import parked

    migrate(cli_settings)
    engine = make_engine(cli_settings)
    one = SyncStateStore(engine, "one", cli_settings.database_schema)
    dependants = [parked.ParkedRecord(("service_request", f"SR{i}"), 1, (("location", f"L{i}"),), f"SR{i}".encode(),
                                      b"value", [("trace.id", b"t")]) for i in range(3)]
    parked_at = time.monotonic()
    parked.park(engine, "one", dependants)
    parked.park(engine, "lessen360", dependants[:1])

    body = read_json(runner.invoke(status.app, ["--json"]).stdout)
    waiting = {p["target"]: p for p in body["parked"]}
    assert {t: p["count"] for t, p in waiting.items()} == {"one": 3, "lessen360": 1}
    assert 0 <= waiting["one"]["oldest_age_s"] <= time.monotonic() - parked_at + 1.0
    assert parked.waiting(engine, "one")[0] == 3
    human = runner.invoke(status.app, [])
    assert human.exit_code == 0 and "parked for a reference" in human.stdout

    assert one.record_sending({("location", "L0"): 1}) == {("location", "L0")}
    one.record([Synced(("location", "L0"), 1, "one-0")], [])  # SR0's reference reached ONE
    sent: list[parked.ParkedRecord] = []
    assert parked.release_ready(engine, "one", sent.extend) == 1
    assert [r.entity for r in sent] == [("service_request", "SR0")] and sent[0].headers == [("trace.id", b"t")]
    body = read_json(runner.invoke(status.app, ["--json"]).stdout)
    assert {p["target"]: p["count"] for p in body["parked"]} == {"one": 2, "lessen360": 1}
    assert parked.waiting(engine, "one")[0] == 2 and parked.waiting(engine, "nobody") == (0, None)
    engine.dispose()
