"""Sync-in workers as real subprocesses (`python -m syncflow.cli.sync_in run`) on the real
stack: a mixed stream from every source end to end, a replay of the whole raw topics by a
new consumer group, and SIGKILL mid-stream followed by a restart.

The oracle is computed locally with the same rules and hash: per canonical entity, the
number of versions is the number of times a source's record of it changed its hash."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

from syncflow.agents.hashing import content_hash
from syncflow.agents.rules import RulesEngine
from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import apply_changes, generate_world
from syncflow.errors import ValidationError
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics
from syncflow.streams.avro import codec_for
from syncflow.streams.headers import ENTITY_TYPE, SOURCE_SYSTEM, TRACE_ID
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.settings import REPO_ROOT, Settings
from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stream:
    """Native records in produce order plus what sync-in must make of them."""

    records: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)  # (entity_type, entity_id) -> versions
    invalid: int = 0


def make_stream(settings: Settings, volume: int, changes: int, seed: int = 5) -> Stream:
    world = generate_world(seed=seed, volume=volume, invalid_rate=0.05)
    out = Stream()
    for e in world.entities.values():
        out.records.append((e.source, e.entity_type, e.source_id, render(e)))
    for source in SOURCES:
        for e in apply_changes(world, source, changes):
            out.records.append((e.source, e.entity_type, e.source_id, render(e)))
    out.records += out.records[-max(1, len(out.records) // 20):]  # unchanged re-sends
    out.records += out.records[: max(1, len(out.records) // 50)]  # late (stale) records
    rules = RulesEngine.from_file(settings.sync_in.rules_file)
    last: dict[tuple[str, str, str], tuple[str, Any]] = {}
    for source, entity_type, _, record in out.records:
        try:
            c = rules.transform(source, entity_type, record)
        except ValidationError:
            out.invalid += 1
            continue
        key, digest, updated = (c.entity_type, c.entity_id, source), content_hash(c.entity), c.entity["source_updated_at"]
        previous = last.get(key)
        if previous is None or (previous[0] != digest and (None in (updated, previous[1]) or updated >= previous[1])):
            out.versions[(c.entity_type, c.entity_id)] += 1
            last[key] = (digest, updated)
    return out


@dataclass
class Pipeline:
    settings: Settings
    suffix: str
    tmp: Path
    engine: Engine
    workers: list[tuple[subprocess.Popen, IO[str]]] = field(default_factory=list)

    def topic(self, base: str) -> str:
        return base + self.suffix

    def produce(self, stream: Stream) -> None:
        codec = codec_for(self.settings)
        producer = ReliableProducer(self.settings)
        out = []
        for i, (source, entity_type, source_id, record) in enumerate(stream.records):
            topic = self.topic(raw_topic(source))
            headers = [(SOURCE_SYSTEM, source.encode()), (ENTITY_TYPE, entity_type.encode()), (TRACE_ID, f"t{i}".encode())]
            value = codec.encode(schema_name(source, entity_type), record, topic=topic)
            out.append(OutgoingRecord(topic, raw_key(entity_type, source_id).encode(), value, headers))
        producer.send_all(out)

    def start(self, group: str, batch_size: int = 100) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(
            SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS=self.settings.kafka_bootstrap_servers,
            SYNCFLOW_DATABASE_URL=self.settings.database_url,
            SYNCFLOW_DATABASE_SCHEMA=self.settings.database_schema,
            SYNCFLOW_MONGO_URL=self.settings.mongo_url,
            SYNCFLOW_MONGO_DATABASE=self.settings.mongo_database,
            SYNCFLOW_SYNC_IN__BATCH_SIZE=str(batch_size),
            SYNCFLOW_SYNC_IN__OUTBOX_SWEEP_INTERVAL_S="1.0",
            SYNCFLOW_SYNC_IN__SESSION_TIMEOUT_S="6",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        )
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncflow.cli.sync_in", "run", "--web-port", str(free_port()),
             "--group-id", group, "--topic-suffix", self.suffix, "--loglevel", "warning"],
            cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append((proc, log))
        return proc

    def sql(self, query: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(query)).all()

    def versions(self) -> Counter:
        rows = self.sql("SELECT entity_type, entity_id, count(*), max(version_number) FROM data_versions GROUP BY 1, 2")
        for t, e, n, top in rows:
            assert n == top, f"versions of {t}:{e} are not gap-free: {n} versions, highest {top}"
        return Counter({(t, e): n for t, e, n, _ in rows})

    def caught_up(self, group: str) -> bool:
        """The group committed every raw partition to its end."""
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "group.id": group,
                             "enable.auto.commit": False})
        try:
            tps = []
            for source in SOURCES:
                topic = self.topic(raw_topic(source))
                for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                    tps.append(TopicPartition(topic, p))
            committed = consumer.committed(tps, timeout=10)
            for tp in committed:
                end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
                if end > 0 and tp.offset < end:
                    return False
            return True
        finally:
            consumer.close()

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in self.workers:
                if proc.poll() not in (None, -signal.SIGKILL, 0):
                    pytest.fail(f"worker exited with {proc.returncode}:\n{tail(log)}")
            if done():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; last worker log:\n{tail(self.workers[-1][1])}")

    def events(self) -> Counter:
        """event_id -> how many times it is on the changes topics."""
        codec = codec_for(self.settings)
        counts: Counter = Counter()
        for entity_type in ENTITY_TYPES:
            for msg in read_topic(self.settings, self.topic(changes_topic(entity_type))):
                counts[codec.decode(msg.value()).record["event_id"]] += 1
        return counts

    def stop_all(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(log: IO[str], size: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-size:]


def read_topic(settings: Settings, topic: str) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        want = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Any] = []
        while len(out) < want:
            msg = consumer.poll(5)
            assert msg is not None, f"{topic}: only {len(out)} of {want} records readable"
            if not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


@pytest.fixture
def pipeline(settings: Settings, unique: Callable[[str], str], tmp_path: Path) -> Iterator[Pipeline]:
    suffix = unique("")
    specs = [TopicSpec(raw_topic(s) + suffix, 3, 3600_000) for s in SOURCES]
    specs += [TopicSpec(changes_topic(e) + suffix, 2, 3600_000) for e in ENTITY_TYPES]
    specs.append(TopicSpec(SYNC_IN_DLQ + suffix, 1, 3600_000))
    create_topics(settings, specs)
    migrate(settings)  # the workers migrate too; the test reads the tables before they start
    engine = make_engine(settings)
    p = Pipeline(settings, suffix, tmp_path, engine)
    try:
        yield p
    finally:
        p.stop_all()
        for _, log in p.workers:
            log.close()
        engine.dispose()
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
            try:
                future.result(30)
            except KafkaException:
                pass


def assert_outcome(p: Pipeline, stream: Stream, *, allow_duplicate_events: bool = False) -> Counter:
    versions = p.versions()
    assert versions == stream.versions
    assert p.sql("SELECT count(*) FROM data_versions WHERE published_at IS NULL")[0][0] == 0
    events = p.events()
    expected_ids = {f"{e}:{n}" for (_, e), top in versions.items() for n in range(1, top + 1)}
    assert set(events) == expected_ids
    if not allow_duplicate_events:
        assert max(events.values()) == 1
    assert len(read_topic(p.settings, p.topic(SYNC_IN_DLQ))) >= stream.invalid
    return events


def test_worker_end_to_end_then_a_replay_adds_nothing(pipeline: Pipeline, unique: Callable[[str], str]) -> None:
    stream = make_stream(pipeline.settings, volume=15, changes=8)
    assert {t for t, _ in stream.versions} == set(ENTITY_TYPES) and stream.invalid > 0
    pipeline.produce(stream)
    first = unique("sync-in-a")
    pipeline.start(first)
    pipeline.wait(lambda: pipeline.caught_up(first) and pipeline.versions() == stream.versions, 120, "the first pass")
    pipeline.wait(lambda: pipeline.sql("SELECT count(*) FROM data_versions WHERE published_at IS NULL")[0][0] == 0, 30, "publishing")
    events = assert_outcome(pipeline, stream)
    dlq_before = len(read_topic(pipeline.settings, pipeline.topic(SYNC_IN_DLQ)))
    assert dlq_before == stream.invalid
    pipeline.stop_all()

    replay = unique("sync-in-replay")
    pipeline.start(replay)
    pipeline.wait(lambda: pipeline.caught_up(replay), 120, "the replay")
    assert pipeline.versions() == stream.versions
    assert pipeline.events() == events


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(pipeline: Pipeline, unique: Callable[[str], str]) -> None:
    stream = make_stream(pipeline.settings, volume=120, changes=60, seed=9)
    pipeline.produce(stream)
    group = unique("sync-in-kill")
    total = sum(stream.versions.values())
    for fraction in (0.2, 0.5):
        started = time.monotonic()
        worker = pipeline.start(group, batch_size=40)
        pipeline.wait(lambda: sum(pipeline.versions().values()) >= fraction * total, 120, f"{fraction:.0%} of the versions")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        print(f"killed at {fraction:.0%} after {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    pipeline.start(group, batch_size=40)
    pipeline.wait(lambda: pipeline.caught_up(group) and pipeline.versions() == stream.versions, 180, "the restart")
    pipeline.wait(lambda: pipeline.sql("SELECT count(*) FROM data_versions WHERE published_at IS NULL")[0][0] == 0, 30, "the sweeper")
    print(f"restart finished after {time.monotonic() - started:.1f}s")
    events = assert_outcome(pipeline, stream, allow_duplicate_events=True)
    duplicates = sum(n - 1 for n in events.values())
    # A kill between Kafka's ack and the commit of published_at re-sends that batch's events
    # (same event_id, same content; sync-out dedups on it). Anything more is a bug.
    assert duplicates <= 2 * 40, f"{duplicates} duplicate change events"
    print(f"kill test: {len(stream.records)} records, {total} versions, {duplicates} duplicate events")
