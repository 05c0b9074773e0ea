"""Sync-out on the real stack: per-test topics (a unique suffix on every sync-out topic and
the group), a migrated schema, target emulators on free ports, a change-event producer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer

from syncflow.agents.sync_out import SyncOutWorker
from syncflow.streams.topics import TopicSpec, changes_topic, sync_out_topics
from syncflow.roles.sync_out import build_worker
from syncflow.emulators.targets import EmulatorState, emulator_url, start_target_emulator
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.avro import codec_for
from syncflow.streams.headers import PRIORITY
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings

ENTITY_TYPES = ("location", "resident", "service_request", "attachment")


def fast_settings(settings: Settings, suffix: str, **sync_out: Any) -> Settings:
    """Short delays and a high rate so tests are quick; overrides by keyword."""
    base = settings.sync_out.model_dump()
    base.update(
        topic_suffix=suffix, retry_delays_s=[0.4, 0.8, 1.2], dependency_retry_delay_s=0.4,
        dependency_max_attempts=20, poll_timeout_s=0.1, session_timeout_ms=6000, priority_aging_s=60.0,
    )
    base.update(sync_out)
    return settings.model_copy(update={"sync_out": type(settings.sync_out).model_validate(base)})


def with_target(settings: Settings, target: str, **target_settings: Any) -> Settings:
    so = settings.sync_out
    t = so.targets[target].model_copy(update=target_settings)
    return settings.model_copy(update={"sync_out": so.model_copy(update={"targets": {**so.targets, target: t}})})


@pytest.fixture
def so_settings(settings: Settings, unique: Callable[[str], str]) -> Iterator[Settings]:
    """Migrated schema, and every topic of both targets' workers under a unique suffix."""
    migrate(settings)
    s = fast_settings(settings, unique(""))
    names: list[str] = []
    for target in ("one", "lessen360"):
        topics = sync_out_topics(s, target)
        names += topics.retries + [topics.dlq]
    names += [changes_topic(e) + s.sync_out.topic_suffix for e in ENTITY_TYPES]
    create_topics(s, [TopicSpec(n, 4 if n.startswith("changes.") else 2, 3600_000) for n in names])
    yield s
    delete_topics(s, names)


@pytest.fixture
async def one_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("one")
    yield runner
    await runner.cleanup()


@pytest.fixture
async def lessen_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("lessen360")
    yield runner
    await runner.cleanup()


def pointing_at(settings: Settings, target: str, runner: web.AppRunner, **target_settings: Any) -> Settings:
    return with_target(settings, target, base_url=emulator_url(runner), **target_settings)


@dataclass
class EventFactory:
    """Encodes ChangeEvents and produces them on the test's changes topics."""

    settings: Settings
    producer: ReliableProducer
    sent: list[dict[str, Any]] = field(default_factory=list)

    def record(self, entity_type: str, entity_id: str, version: int, snapshot: dict[str, Any], *,
               origin: str = "yardi", priority: int = 5, references: dict[str, str] | None = None,
               change_type: str | None = None) -> dict[str, Any]:
        return {
            "event_id": f"{entity_id}:{version}", "entity_type": entity_type, "entity_id": entity_id,
            "version": version, "change_type": change_type or ("create" if version == 1 else "update"),
            "origin_source": origin, "origin_source_id": f"src-{entity_id}", "priority": priority,
            "changed_fields": [], "snapshot": json.dumps({"entity_id": entity_id, **snapshot}),
            "references": references or {}, "occurred_at": int(time.time() * 1000), "trace_id": None,
        }

    def send(self, records: list[dict[str, Any]]) -> None:
        codec = codec_for(self.settings)
        out = []
        for r in records:
            topic = changes_topic(r["entity_type"]) + self.settings.sync_out.topic_suffix
            value = codec.encode("io.syncflow.canonical.ChangeEvent", r, topic=topic)
            out.append(OutgoingRecord(topic, r["entity_id"].encode(), value, [(PRIORITY, str(r["priority"]).encode())]))
        self.producer.send_all(out)
        self.sent += records


@pytest.fixture
def events(so_settings: Settings) -> Iterator[EventFactory]:
    producer = ReliableProducer(so_settings)
    yield EventFactory(so_settings, producer)
    producer.close()


def location(n: int | str, **extra: Any) -> dict[str, Any]:
    return {"location_type": "unit", "property_code": "P1", "unit_code": f"U{n}", **extra}


def service_request(location_id: str, **extra: Any) -> dict[str, Any]:
    return {"location_id": location_id, "category": "plumbing", "status": "open", "priority": 5,
            "requested_at": 1_700_000_000_000, **extra}


@dataclass
class RunningWorker:
    worker: SyncOutWorker
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.worker.stop()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    running: list[RunningWorker] = []

    async def start(settings: Settings, target: str, **kw: Any) -> RunningWorker:
        worker = build_worker(settings, target, **kw)
        rw = RunningWorker(worker, asyncio.create_task(worker.run()))
        running.append(rw)
        return rw

    yield start
    for rw in running:
        if not rw.task.done():
            await rw.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def delivered_versions(state: EmulatorState) -> dict[str, list[int]]:
    """external id → versions applied, in the order the target applied them."""
    out: dict[str, list[int]] = {}
    for a in state.received:
        out.setdefault(a.external_id, []).append(a.version or 0)
    return out


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 20.0) -> list[Any]:
    """Every record of a topic (at least `expect`), from the beginning."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"reader-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < expect:
            for m in c.consume(100, 0.5):
                if m.error() is None:
                    got.append(m)
        if len(got) >= expect:  # anything beyond what was expected, briefly
            got += [m for m in c.consume(100, 1.0) if m.error() is None]
    finally:
        c.close()
    return got

