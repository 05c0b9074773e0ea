"""Connector test fixtures: a source emulator on a free port, settings pointing a source
at it with its own raw and dead-letter topics and PostgreSQL schema (where its cursors
live), and a reader that decodes everything on a topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, TopicPartition

from syncflow.connectors.cursor import CursorStore
from syncflow.emulators.sources import RunningEmulator, World, generate_world, start_source_emulator
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.counts import tables_in
from syncflow.streams.avro import codec_for
from syncflow.settings import Settings

pytestmark = pytest.mark.integration


@dataclass
class RawMessage:
    key: str | None
    value: bytes | None
    headers: dict[str, str]
    partition: int
    offset: int


def read_topic(settings: Settings, topic: str, timeout: float = 20.0) -> list[RawMessage]:
    """Every message on `topic`, from the beginning to the current end."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = list(meta.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[RawMessage] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(RawMessage(msg.key().decode() if msg.key() else None, msg.value(),
                                  {k: v.decode() for k, v in msg.headers() or [] if v is not None},
                                  msg.partition(), msg.offset()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
        assert not remaining, f"could not read {topic} to its end"
        return out
    finally:
        consumer.close()


def latest_by_key(settings: Settings, messages: list[RawMessage]) -> dict[str, dict[str, Any]]:
    """key -> decoded record of the newest message per key (partition order is per key)."""
    codec = codec_for(settings)
    latest: dict[str, dict[str, Any]] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        assert m.key is not None and m.value is not None
        latest[m.key] = codec.decode(m.value).record
    return latest


async def emulator_truth(emulator: RunningEmulator) -> dict[str, dict[str, Any]]:
    """key -> the record the emulator currently serves, from its /_emulator/records."""
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/_emulator/records") as resp:
        body = await resp.json()
    return {f"{r['entity_type']}:{r['source_id']}": r["record"] for r in body["records"]}


def saved_cursors(settings: Settings, source: str) -> dict[str, str]:
    """stream -> cursor `source` has saved in the settings' schema (empty before its first run).
    It does not migrate: a connector running beside it migrates in a thread, and Alembic's
    module-level context does not take two migrations at once in one process."""
    engine = make_engine(settings, pool_size=1)
    try:
        if "connector_cursors" not in tables_in(engine, settings.database_schema):
            return {}
        return CursorStore(engine, source).all()
    finally:
        engine.dispose()


@pytest.fixture
def world() -> World:
    return generate_world(seed=11, volume=40, invalid_rate=0.1)


@pytest.fixture
async def start_emulator(world: World) -> AsyncIterator[Callable[..., Any]]:
    started: list[RunningEmulator] = []

    async def start(source: str, **kwargs: Any) -> RunningEmulator:
        emulator = await start_source_emulator(source, "127.0.0.1", 0, world, **kwargs)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.close()


@pytest.fixture
def source_settings(settings: Settings, topic_factory: Callable[..., str]) -> Callable[..., Settings]:
    """source_settings(source, url, **source_overrides) -> Settings whose `source` reads from
    `url` into its own raw topic (3 partitions) and dead-letter topic, with fast retries, and
    keeps its cursors in the test's own schema."""
    stack = settings

    def make(source: str, url: str, **overrides: Any) -> Settings:
        raw = topic_factory(f"raw.{source}", partitions=3)
        dlq = topic_factory("sync-in.dlq")
        src = stack.connectors.sources[source].model_copy(update={
            "base_url": url, "api_key": "local-key", "topic": raw, "page_size": 7, "request_timeout_s": 2.0,
            "retry_attempts": 4, "retry_initial_s": 0.05, "retry_max_s": 0.2, "poll_interval_s": 0.2, **overrides})
        connectors = stack.connectors.model_copy(update={
            "dlq_topic": dlq, "sources": {**stack.connectors.sources, source: src}})
        return stack.model_copy(update={"connectors": connectors})

    return make
