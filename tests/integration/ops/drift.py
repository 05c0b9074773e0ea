"""A small world for reconcile and resync tests: entities written to the common database the
way sync-in writes them (upsert_versions, then the outbox relay publishes their change
events), a real sync-out worker delivering them to a ONE emulator, and the CLI seeing the same
settings through SYNCFLOW_* variables."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from syncflow.agents.outbox import OutboxRelay
from syncflow.agents.sync_out import SyncOutWorker
from syncflow.streams.topics import ENTITY_TYPES, TopicSpec, changes_topic, sync_out_topics
from syncflow.roles.sync_out import build_worker
from syncflow.cli import app
from syncflow.emulators.targets import EmulatorState, emulator_state, emulator_url, start_target_emulator
from syncflow.sinks.common_db.engine import make_engine, unit_of_work
from syncflow.sinks.common_db.migrate import migrate
from syncflow.sinks.common_db.models import TargetSyncState
from syncflow.sinks.common_db.repository import upsert_versions
from syncflow.model import EntityRecord
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import Settings, get_settings
from tests.integration.ops.conftest import services_env

runner = CliRunner()


def location(entity_id: str, *, name: str = "Unit", prop: str = "P1", deleted: bool = False) -> EntityRecord:
    entity = {"entity_id": entity_id, "location_type": "unit", "property_code": prop, "unit_code": entity_id.upper(),
              "name": name, "country": "US", "status": "active", "source_system": "yardi", "source_id": entity_id,
              "deleted": deleted}
    return EntityRecord("location", entity_id, entity, f"h-{name}-{prop}-{deleted}", "yardi", entity_id, deleted=deleted)


def service_request(entity_id: str, location_id: str, status: str = "open") -> EntityRecord:
    entity = {"entity_id": entity_id, "location_id": location_id, "resident_id": None, "category": "plumbing",
              "priority": 3, "status": status, "requested_at": datetime(2024, 5, 2, tzinfo=UTC),
              "source_system": "yardi", "source_id": entity_id, "deleted": False}
    return EntityRecord("service_request", entity_id, entity, f"h-{status}", "yardi", entity_id, priority=3,
                        references={"location": location_id})


# what the world holds once written: entity id -> latest version
WORLD = {"loc-1": 1, "loc-2": 2, "loc-3": 2, "loc-4": 1, "loc-5": 1, "loc-6": 2, "loc-p2": 1, "sr-1": 1}


@dataclass
class World:
    settings: Settings
    engine: Engine
    emulator: web.AppRunner
    worker: SyncOutWorker | None = None
    task: asyncio.Task[None] | None = None

    @property
    def state(self) -> EmulatorState:
        return emulator_state(self.emulator)

    def write(self, batches: list[list[EntityRecord]]) -> None:
        """Commit versions as sync-in does and publish their change events (the outbox)."""
        producer = ReliableProducer(self.settings)
        relay = OutboxRelay(self.engine, producer, codec_for(self.settings),
                            lambda t: changes_topic(t) + self.settings.sync_out.topic_suffix)
        try:
            for batch in batches:
                with unit_of_work(self.engine) as session:
                    made = upsert_versions(session, batch)
                relay.publish_entities({(v.entity_type, v.entity_id) for v in made})
        finally:
            producer.close()

    def sync_rows(self) -> dict[str, TargetSyncState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(TargetSyncState).where(TargetSyncState.target == "one")).all()
        return {r.entity_id: r for r in rows}

    async def start_worker(self) -> None:
        self.worker = build_worker(self.settings, "one")
        self.task = asyncio.create_task(self.worker.run())

    async def drained(self, expected: dict[str, int], timeout: float = 40.0) -> None:
        """Wait until sync-out recorded every entity at its expected version as synced and the
        worker has nothing in hand."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await asyncio.to_thread(self.sync_rows)
            w = self.worker
            if (all(e in rows and rows[e].synced_version == v and rows[e].status == "synced" for e, v in expected.items())
                    and w is not None and w.offsets.pending_count() == 0 and len(w.buffer) == 0):
                return
            await asyncio.sleep(0.1)
        rows = await asyncio.to_thread(self.sync_rows)
        raise AssertionError(f"not drained: {({k: (r.synced_version, r.status) for k, r in rows.items()})}")

    async def stop(self) -> None:
        if self.worker is not None and self.task is not None and not self.task.done():
            self.worker.stop()
            await asyncio.wait_for(self.task, 30)

    def tamper(self, action: str, external_id: str, collection: str = "locations", **kw: Any) -> None:
        self.state.tamper(action, collection, external_id, kw.get("fields"))

    def received_since(self, n: int) -> list[tuple[str, int | None, str, str | None]]:
        return [(a.external_id, a.version, a.op, a.idempotency_key) for a in self.state.received[n:]]

    def retry_topic_size(self) -> int:
        """Records ever produced to the target's first retry tier (high watermarks)."""
        topic = sync_out_topics(self.settings, "one").tiers[0]
        c = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "group.id": f"wm-{time.time()}"})
        try:
            meta = c.list_topics(topic, timeout=10).topics[topic]
            return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions)
        finally:
            c.close()


async def cli(*args: str) -> Any:
    """Run `syncflow <args>` (in a thread: the commands run their own event loop)."""
    return await asyncio.to_thread(runner.invoke, app, list(args))


def json_out(result: Any) -> Any:
    out = result.stdout
    return json.loads(out[out.index("{"):])


@pytest.fixture
async def world(settings: Settings, unique: Callable[[str], str], tmp_path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """A migrated schema, unique topics, a ONE emulator, the CLI's settings pointing at all of
    it, and the WORLD entities delivered by a running worker."""
    migrate(settings)
    emulator = await start_target_emulator("one", credential=settings.sync_out.targets["one"].api_key)
    suffix = unique("")
    env = {
        **services_env(settings),
        "SYNCFLOW_OPS__AUDIT_FILE": str(tmp_path / "audit" / "dlq-redrive.jsonl"),
        "SYNCFLOW_SYNC_OUT__TOPIC_SUFFIX": suffix,
        "SYNCFLOW_SYNC_OUT__RETRY_DELAYS_S": "[0.4, 0.8, 1.2]",
        "SYNCFLOW_SYNC_OUT__DEPENDENCY_RETRY_DELAY_S": "0.3",
        "SYNCFLOW_SYNC_OUT__POLL_TIMEOUT_S": "0.1",
        "SYNCFLOW_SYNC_OUT__SESSION_TIMEOUT_MS": "6000",
        "SYNCFLOW_SYNC_OUT__TARGETS__ONE__BASE_URL": emulator_url(emulator),
        "SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUTE": "600000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    s = get_settings()
    topics = sync_out_topics(s, "one")
    names = topics.retries + [topics.dlq] + [changes_topic(e) + suffix for e in ENTITY_TYPES]
    create_topics(s, [TopicSpec(n, 2, 3600_000) for n in names])
    engine = make_engine(s, pool_size=2)
    w = World(s, engine, emulator)
    try:
        w.write([
            [location(f"loc-{i}") for i in range(1, 7)] + [location("loc-p2", prop="P2"), service_request("sr-1", "loc-1")],
            [location("loc-2", name="Unit two"), location("loc-3", name="Unit three"), location("loc-6", deleted=True)],
        ])
        await w.start_worker()
        await w.drained(WORLD)
        yield w
    finally:
        await w.stop()
        engine.dispose()
        await emulator.cleanup()
        delete_topics(s, names)
        get_settings.cache_clear()
