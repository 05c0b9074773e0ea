"""Fixtures for the operations commands: settings the CLI sees (through SYNCFLOW_* env
variables), records produced with failure headers, and a group that has read a topic."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from syncflow.settings import Settings, get_settings


def services_env(settings: Settings) -> dict[str, str]:
    """The SYNCFLOW_* variables that point a CLI command at the per-test services (Kafka,
    the test's PostgreSQL schema and MongoDB database)."""
    return {
        "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SYNCFLOW_DATABASE_URL": settings.database_url,
        "SYNCFLOW_DATABASE_SCHEMA": settings.database_schema,
        "SYNCFLOW_MONGO_URL": settings.mongo_url,
        "SYNCFLOW_MONGO_DATABASE": settings.mongo_database,
    }


@pytest.fixture
def cli_settings(settings: Settings, unique: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The per-test settings, also visible to `get_settings()` inside CLI commands."""
    env = {
        **services_env(settings),
        "SYNCFLOW_OPS__REDRIVE_GROUP": unique("redrive"),
        "SYNCFLOW_OPS__AUDIT_FILE": str(tmp_path / "audit.jsonl"),
        "SYNCFLOW_SYNC_IN__GROUP_ID": unique("sync-in"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        get_settings.cache_clear()


def consume_all(settings: Settings, topic: str, group: str, expected: int, commit: bool = True, timeout: float = 20.0) -> list:
    """Read `expected` records of `topic` as `group` (committing them), then leave the group."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list = []
    import time

    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    if commit and got:
        consumer.commit(asynchronous=False)
    consumer.close()
    return got


def read_json(text: str) -> object:
    """The JSON document in a command's output (progress bars go to stderr)."""
    start = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
    return json.loads(text[start:])
