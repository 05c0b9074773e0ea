"""`syncflow replay` against the real broker: dry-run numbers, actual resets (earliest,
offset, time) and the refusal while the group has a live member."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer
from typer.testing import CliRunner

from syncflow.cli import replay
from syncflow.streams.admin import admin_client, committed_offsets
from syncflow.settings import Settings
from tests.integration.ops.conftest import consume_all

runner = CliRunner()
BASE_MS = 1_700_000_000_000


def produce(settings: Settings, topic: str, per_partition: int, partitions: int) -> None:
    """Records with known timestamps: partition p, i-th record at BASE_MS + i seconds."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, f"v{i}".encode(), f"k{i}".encode(), partition=p, timestamp=BASE_MS + i * 1000)
    assert producer.flush(30) == 0


def test_dry_run_shows_offsets_and_rereads_and_changes_nothing(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic, group = topic_factory("replay", partitions=2), unique("group")
    produce(cli_settings, topic, per_partition=5, partitions=2)
    assert len(consume_all(cli_settings, topic, group, expected=10)) == 10
    result = runner.invoke(replay.app, ["--group", group, "--topic", topic, "--to-earliest", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["applied"] is False
    assert body["rereads"] == 10
    assert [(p["partition"], p["current"], p["new"], p["rereads"]) for p in body["partitions"]] == [(0, 5, 0, 5), (1, 5, 0, 5)]
    assert committed_offsets(admin_client(cli_settings), group) == {(topic, 0): 5, (topic, 1): 5}


def test_reset_to_earliest_then_the_group_reads_everything_again(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic, group = topic_factory("replay", partitions=2), unique("group")
    produce(cli_settings, topic, per_partition=3, partitions=2)
    consume_all(cli_settings, topic, group, expected=6)
    result = runner.invoke(replay.app, ["-g", group, "-t", topic, "--to-earliest"])
    assert result.exit_code == 0, result.output
    assert "records to re-read: 6" in result.stdout
    assert committed_offsets(admin_client(cli_settings), group) == {(topic, 0): 0, (topic, 1): 0}
    assert len(consume_all(cli_settings, topic, group, expected=6)) == 6


def test_reset_to_an_offset_and_to_a_time_on_one_partition(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic, group = topic_factory("replay", partitions=2), unique("group")
    produce(cli_settings, topic, per_partition=6, partitions=2)
    consume_all(cli_settings, topic, group, expected=12)
    admin = admin_client(cli_settings)
    result = runner.invoke(replay.app, ["-g", group, "-t", topic, "-p", "1", "--to-offset", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rereads"] == 4
    assert committed_offsets(admin, group) == {(topic, 0): 6, (topic, 1): 2}
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((BASE_MS + 2500) / 1000)) + ".500Z"
    result = runner.invoke(replay.app, ["-g", group, "-t", topic, "--to-time", at, "--json"])
    assert result.exit_code == 0, result.output
    assert committed_offsets(admin, group) == {(topic, 0): 3, (topic, 1): 3}  # first record at or after +2.5 s


def test_refuses_while_the_group_has_an_active_member(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic, group = topic_factory("replay"), unique("group")
    produce(cli_settings, topic, per_partition=2, partitions=1)
    member = Consumer({"bootstrap.servers": cli_settings.kafka_bootstrap_servers, "group.id": group,
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    member.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the consumer never joined"
        result = runner.invoke(replay.app, ["-g", group, "-t", topic, "--to-earliest"])
        assert result.exit_code == 1
        assert "active member" in result.output
        dry = runner.invoke(replay.app, ["-g", group, "-t", topic, "--to-earliest", "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["members"] == 1
    finally:
        member.close()


def test_unknown_topic_and_ambiguous_target_fail(cli_settings: Settings, unique: Callable[[str], str]) -> None:
    missing = runner.invoke(replay.app, ["-g", unique("g"), "-t", unique("no-such-topic"), "--to-earliest"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    both = runner.invoke(replay.app, ["-g", unique("g"), "-t", "x", "--to-earliest", "--to-latest"])
    assert both.exit_code == 1 and "exactly one" in both.output
