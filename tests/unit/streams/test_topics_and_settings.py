"""The topic catalogue and settings: names, counts and env overrides."""

from __future__ import annotations

import pytest

from syncflow.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, TopicSpec, catalogue, raw_key, retry_topic, sync_out_topics, target_dlq


def test_catalogue_lists_every_topic_once_for_the_configured_targets() -> None:
    names = [spec.name for spec in catalogue(Settings())]
    assert len(names) == len(set(names))
    assert {"raw.yardi", "raw.realpage", "raw.insight", "raw.lessen360"} <= set(names)
    assert {"changes.location", "changes.resident", "changes.service_request", "changes.attachment"} <= set(names)
    assert SYNC_IN_DLQ in names
    for target in ("one", "lessen360"):
        assert target_dlq(target) in names
        assert [retry_topic(target, n) for n in (1, 2, 3)] == [n for n in names if n.startswith(f"sync-out.{target}.retry.")]


def test_retry_tiers_follow_the_configured_delays() -> None:
    settings = Settings(sync_out={"retry_delays_s": [1, 2]})
    assert [s.name for s in catalogue(settings) if ".retry." in s.name and ".one." in s.name] == [
        "sync-out.one.retry.1",
        "sync-out.one.retry.2",
    ]
    assert settings.sync_out.retry_tiers == 2
    assert sync_out_topics(settings, "one").tiers == ["sync-out.one.retry.1", "sync-out.one.retry.2"]


def test_env_vars_override_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS", "broker:1234")
    monkeypatch.setenv("SYNCFLOW_SYNC_IN__BATCH_SIZE", "77")
    monkeypatch.setenv("SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUTE", "5")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "broker:1234"
    assert settings.sync_in.batch_size == 77
    assert settings.sync_out.targets["one"].rate_per_minute == 5


def test_settings_are_frozen() -> None:
    with pytest.raises(Exception):
        Settings().kafka_bootstrap_servers = "x"  # type: ignore[misc]


def test_no_catalogued_topic_is_compacted_each_keeps_its_history_for_its_retention() -> None:
    """Replay re-reads raw and change history and a DLQ keeps every failure: compaction would
    keep only the latest record per key, so every topic is time-retained instead."""
    settings = Settings()
    t = settings.topics
    expected_retention = {"raw.": t.raw_retention_ms, "changes.": t.changes_retention_ms, "sync-in.dlq": t.dlq_retention_ms}
    for spec in catalogue(settings):
        config = spec.topic_config()
        assert not spec.compacted, spec.name
        assert config["cleanup.policy"] == "delete", spec.name
        assert config["retention.ms"] == str(spec.retention_ms), spec.name
        for prefix, retention in expected_retention.items():
            if spec.name.startswith(prefix):
                assert spec.retention_ms == retention, spec.name
        if spec.name.endswith(".dlq"):
            assert spec.retention_ms == t.dlq_retention_ms, spec.name


def test_a_compacted_spec_says_so_and_extra_config_wins() -> None:
    spec = TopicSpec("state", 1, 1000, compacted=True, config={"retention.ms": "5", "min.insync.replicas": "1"})
    assert spec.topic_config() == {"retention.ms": "5", "cleanup.policy": "compact,delete", "min.insync.replicas": "1"}


def test_raw_key_is_entity_type_and_source_id() -> None:
    assert raw_key("location", "P1-U2") == "location:P1-U2"


def test_one_field_of_one_source_keeps_its_other_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCFLOW_CONNECTORS__SOURCES__YARDI__POLL_INTERVAL_S", "2")
    sources = Settings().connectors.sources
    assert sources["yardi"].poll_interval_s == 2
    assert sources["yardi"].base_url == "http://127.0.0.1:7001"
    assert set(sources) == {"yardi", "realpage", "insight", "lessen360"}
