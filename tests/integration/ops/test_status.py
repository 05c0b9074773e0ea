"""`syncflow status` on an empty schema (tables not there yet) and a populated one."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from syncflow.cli import status
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.settings import Settings
from tests.integration.ops.conftest import consume_all, read_json

runner = CliRunner()


def test_empty_schema_says_the_tables_are_missing(cli_settings: Settings) -> None:
    result = runner.invoke(status.app, ["--json"])
    assert result.exit_code == 0, result.output
    body = read_json(result.stdout)
    assert body["missing_tables"] == ["sync_master_data", "target_sync_state"]
    assert body["counts"] == []
    assert {g["group"] for g in body["lag"]} >= {cli_settings.sync_in.group_id, "sync-out.one", "sync-out.lessen360"}
    assert set(body["dlq_depth"]) == {"sync-in.dlq", "sync-out.one.dlq", "sync-out.lessen360.dlq"}
    human = runner.invoke(status.app, [])
    assert human.exit_code == 0 and "run the migrations" in human.stdout


def test_populated_schema_counts_by_status_with_oldest_pending(cli_settings: Settings) -> None:
    migrate(cli_settings)
    schema = cli_settings.database_schema
    engine = create_engine(cli_settings.database_url)
    with engine.begin() as conn:
        for i, state in enumerate(["synced", "synced", "failed", "pending"]):
            conn.execute(text(
                f'INSERT INTO "{schema}".sync_master_data (entity_type, entity_id, source_system, source_id, data_hash, sync_status) '
                "VALUES ('location', :id, 'yardi', :id, 'h', :s)"), {"id": f"L{i}", "s": state})
        rows = [("location", "L0", "one", "synced"), ("location", "L1", "one", "pending"), ("location", "L2", "one", "pending"),
                ("location", "L0", "lessen360", "failed"), ("resident", "R0", "one", "retry")]
        for entity_type, entity_id, target, state in rows:
            conn.execute(text(
                f'INSERT INTO "{schema}".target_sync_state (entity_type, entity_id, target, status, updated_at) '
                "VALUES (:t, :id, :target, :s, now() - interval '2 hours')"), {"t": entity_type, "id": entity_id, "target": target, "s": state})
    engine.dispose()

    result = runner.invoke(status.app, ["--json"])
    assert result.exit_code == 0, result.output
    body = read_json(result.stdout)
    assert body["missing_tables"] == []
    counts = {(c["side"], c["entity_type"], c["system"], c["status"]): c for c in body["counts"]}
    assert counts[("sync-in", "location", "yardi", "synced")]["count"] == 2
    assert counts[("sync-in", "location", "yardi", "failed")]["count"] == 1
    assert counts[("sync-out", "location", "one", "pending")]["count"] == 2
    assert counts[("sync-out", "location", "lessen360", "failed")]["count"] == 1
    assert 7000 < counts[("sync-out", "resident", "one", "retry")]["oldest_age_s"] < 7400
    assert counts[("sync-out", "location", "one", "synced")]["oldest_age_s"] is None
    assert body["unpublished_versions"] == 0
    human = runner.invoke(status.app, [])
    assert human.exit_code == 0 and "sync status" in human.stdout and "2.0h" in human.stdout


def test_lag_of_a_group_that_is_behind(cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str],
                                       monkeypatch) -> None:
    """The lag a status shows is the records a group has not read: here a group that read 2 of 5."""
    from syncflow.ops.offsets import admin_for
    from syncflow.ops.status import lag_by_group
    from syncflow.streams.producer import OutgoingRecord, ReliableProducer

    topic, group = topic_factory("status"), unique("group")
    ReliableProducer(cli_settings).send_all([OutgoingRecord(topic, None, b"x") for _ in range(2)])
    consume_all(cli_settings, topic, group, expected=2)
    ReliableProducer(cli_settings).send_all([OutgoingRecord(topic, None, b"x") for _ in range(3)])
    [lag] = lag_by_group(admin_for(cli_settings), {group: [topic]})
    assert (lag.group, lag.lag, lag.partitions) == (group, 3, 1)


def test_dlq_depth_and_records_not_redriven_yet(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    from syncflow.cli import dlq
    from syncflow.ops.offsets import admin_for
    from syncflow.ops.status import dlq_depth, dlq_not_redriven
    from tests.integration.ops.test_dlq import park
    from syncflow.errors import ValidationError

    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    for key in ("a", "b"):
        park(cli_settings, dlq_topic, original, key, ValidationError([]), "location")
    admin = admin_for(cli_settings)
    group = cli_settings.ops.redrive_group
    assert dlq_depth(admin, [dlq_topic]) == {dlq_topic: 2}
    assert dlq_not_redriven(admin, [dlq_topic], group) == {dlq_topic: 2}
    assert runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"]).exit_code == 0
    park(cli_settings, dlq_topic, original, "c", ValidationError([]), "location")
    assert dlq_depth(admin, [dlq_topic]) == {dlq_topic: 3}
    assert dlq_not_redriven(admin, [dlq_topic], group) == {dlq_topic: 1}
