"""Sync-in workers as real subprocesses (`python -m syncflow.cli.sync_in run`) on the real
stack: a mixed stream from every source end to end, a replay of the whole raw topics by a
new consumer group, and SIGKILL mid-stream followed by a restart.

The oracle is computed locally with the same rules and hash: per canonical entity, the
number of versions is the number of times a source's record of it changed its hash; per raw
key, the raw document holds the last record sent with that record's outcome."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient
from sqlalchemy import Engine, text

from syncflow.agents.hashing import content_hash
from syncflow.agents.rules import RulesEngine
from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import apply_changes, generate_world
from syncflow.errors import ValidationError
from syncflow.model import RawKey
from syncflow.sinks.raw_store import COLLECTION, COMPLETED, FAILED, from_document
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics
from syncflow.streams.avro import codec_for
from syncflow.streams.headers import ENTITY_TYPE, SOURCE_SYSTEM, TRACE_ID
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stream:
    """Native records in produce order plus what sync-in must make of them."""

    records: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)  # (entity_type, entity_id) -> versions
    invalid: int = 0
    # raw document _id -> (index in `records` of the last record sent for it, its inbound status)
    raw: dict[str, tuple[int, str]] = field(default_factory=dict)


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
    for i, (source, entity_type, source_id, record) in enumerate(out.records):
        doc_id = RawKey(source, entity_type, source_id).doc_id
        try:
            c = rules.transform(source, entity_type, record)
        except ValidationError:
            out.invalid += 1
            out.raw[doc_id] = (i, FAILED)
            continue
        out.raw[doc_id] = (i, COMPLETED)
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

    def start(self, group: str, batch_size: int = 100, loglevel: str = "warning", **extra_env: str) -> subprocess.Popen:
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
            **extra_env,
        )
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncflow.cli.sync_in", "run", "--web-port", str(free_port()),
             "--group-id", group, "--topic-suffix", self.suffix, "--loglevel", loglevel],
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

    def version_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM data_versions")[0][0])

    def unpublished_event_ids(self) -> set[str]:
        return {f"{e}:{n}" for e, n in self.sql("SELECT entity_id, version_number FROM data_versions WHERE published_at IS NULL")}

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
            try:
                committed = consumer.committed(tps, timeout=10)
            except KafkaException as exc:  # e.g. NOT_COORDINATOR while the group's coordinator is chosen
                if exc.args[0].retriable():
                    return False
                raise
            for tp in committed:
                end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
                if end > 0 and tp.offset < end:
                    return False
            return True
        finally:
            consumer.close()

    def wait(self, done: Callable[[], bool], timeout: float, what: str, poll_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in self.workers:
                if proc.poll() not in (None, -signal.SIGKILL, 0):
                    pytest.fail(f"worker exited with {proc.returncode}:\n{tail(log)}")
            if done():
                return
            time.sleep(poll_s)
        pytest.fail(f"timed out waiting for {what}; last worker log:\n{tail(self.workers[-1][1])}")

    def events(self) -> Counter:
        """event_id -> how many times it is on the changes topics."""
        return Counter({event_id: len(copies) for event_id, copies in self.event_records().items()})

    def event_records(self) -> dict[str, list[dict[str, Any]]]:
        """event_id -> every copy of it on the changes topics (decoded)."""
        codec = codec_for(self.settings)
        out: dict[str, list[dict[str, Any]]] = {}
        for entity_type in ENTITY_TYPES:
            for msg in read_topic(self.settings, self.topic(changes_topic(entity_type))):
                record = codec.decode(msg.value()).record
                out.setdefault(record["event_id"], []).append(record)
        return out

    def raw_documents(self) -> dict[str, dict[str, Any]]:
        """The raw store's documents by _id (read straight from MongoDB)."""
        client: MongoClient = MongoClient(self.settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True)
        try:
            return {d["_id"]: d for d in client[self.settings.mongo_database][COLLECTION].find({})}
        finally:
            client.close()

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


def plain(value: Any) -> Any:
    """A decoded record or a stored rawData in one comparable form: dates and Decimals as
    text (how the raw store keeps them), datetimes aware and to the millisecond (BSON)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def assert_raw_store(p: Pipeline, stream: Stream) -> None:
    """Each produced key has its raw document, with the last record sent for that key as
    rawData and that record's outcome as its inbound status."""
    docs = p.raw_documents()
    assert set(docs) == set(stream.raw), (
        f"raw documents missing: {sorted(set(stream.raw) - set(docs))[:5]}, unexpected: {sorted(set(docs) - set(stream.raw))[:5]}")
    codec = codec_for(p.settings)
    wrong = []
    for doc_id, (index, status) in stream.raw.items():
        source, entity_type, source_id, record = stream.records[index]
        topic = p.topic(raw_topic(source))
        sent = codec.decode(codec.encode(schema_name(source, entity_type), record, topic=topic), topic=topic).record
        doc = docs[doc_id]
        assert (doc["sourceSystem"], doc["entityType"], doc["sourceId"]) == (source, entity_type, source_id)
        if doc["syncStatus"]["inbound"] != status or plain(from_document(doc.get("rawData") or {})) != plain(sent):
            wrong.append((doc_id, doc["syncStatus"]["inbound"], status))
    assert not wrong, f"{len(wrong)} raw document(s) not at the last record sent / its outcome, e.g. {wrong[:3]}"


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
    assert_raw_store(p, stream)
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
    assert_raw_store(pipeline, stream)  # the replay rewrote each document to the same end


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(pipeline: Pipeline, unique: Callable[[str], str]) -> None:
    stream = make_stream(pipeline.settings, volume=120, changes=60, seed=9)
    pipeline.produce(stream)
    group = unique("sync-in-kill")
    total = sum(stream.versions.values())
    step = total // 5
    unpublished_at_kill: list[set[str]] = []
    for kill in (1, 2):
        before = pipeline.version_count()
        started = time.monotonic()
        worker = pipeline.start(group, batch_size=40)
        # the worker is past start-up and writing: it has made versions of its own
        pipeline.wait(lambda: pipeline.version_count() >= before + step, 120, f"{step} versions from worker {kill}", poll_s=0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_kill = pipeline.version_count()
        assert before < at_kill < total, f"kill {kill} did not land mid-stream: {before} → {at_kill} of {total} versions"
        unpublished_at_kill.append(pipeline.unpublished_event_ids())
        print(f"kill {kill} after {time.monotonic() - started:.1f}s at {at_kill}/{total} versions "
              f"({len(unpublished_at_kill[-1])} unpublished)")
    started = time.monotonic()
    pipeline.start(group, batch_size=40)
    pipeline.wait(lambda: pipeline.caught_up(group) and pipeline.versions() == stream.versions, 180, "the restart")
    pipeline.wait(lambda: pipeline.sql("SELECT count(*) FROM data_versions WHERE published_at IS NULL")[0][0] == 0, 30, "the sweeper")
    print(f"restart finished after {time.monotonic() - started:.1f}s")
    # versions exactly once: the oracle's count per entity, gap-free (assert_outcome)
    assert_outcome(pipeline, stream, allow_duplicate_events=True)
    # change events: the one documented duplicate is a kill between Kafka's ack of a batch's
    # events and the commit of published_at; the version is then still unpublished when the
    # worker is dead, and the sweeper sends the same event again. Nothing else may repeat.
    copies = pipeline.event_records()
    duplicated = {event_id: records for event_id, records in copies.items() if len(records) > 1}
    for event_id, records in duplicated.items():
        kills = sum(event_id in unpublished for unpublished in unpublished_at_kill)
        assert kills, f"{event_id} sent {len(records)} times but was published at every kill"
        assert len(records) <= 1 + kills, f"{event_id} sent {len(records)} times, unpublished at {kills} kill(s)"
        assert all(r == records[0] for r in records), f"{event_id}: the copies differ"
    duplicates = sum(len(r) - 1 for r in duplicated.values())
    print(f"kill test: {len(stream.records)} records, {total} versions, {duplicates} duplicate events "
          f"(all unpublished at a kill)")


def test_json_log_lines_one_per_batch_and_each_dead_lettered_record_by_name_and_trace_id(
        pipeline: Pipeline, unique: Callable[[str], str]) -> None:
    """SYNCFLOW_LOG_JSON reaches the worker's log (Faust does not replace the handler): one
    INFO line per batch with its counts, one warning per dead-lettered record naming it and
    carrying its trace id."""
    world = generate_world(seed=3, volume=4, invalid_rate=0.3)
    stream = Stream(records=[(e.source, e.entity_type, e.source_id, render(e)) for e in world.entities.values()])
    rules = RulesEngine.from_file(pipeline.settings.sync_in.rules_file)
    invalid = {}
    for i, (source, entity_type, source_id, record) in enumerate(stream.records):
        try:
            rules.transform(source, entity_type, record)
        except ValidationError:
            invalid[f"t{i}"] = f"{source}:{entity_type}:{source_id}"  # Pipeline.produce's trace ids
    assert invalid, "the world must hold invalid records"
    pipeline.produce(stream)
    group = unique("sync-in-log")
    pipeline.start(group, batch_size=20, loglevel="info", SYNCFLOW_LOG_JSON="true")
    pipeline.wait(lambda: pipeline.caught_up(group), 90, "the worker to commit everything")
    pipeline.stop_all()
    log = pipeline.workers[-1][1]
    log.flush()
    log.seek(0)
    lines = log.read().splitlines()
    assert not [line for line in lines if line.startswith("[20")], "Faust's own log format took over"
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    batches = [e for e in entries if e["message"].startswith("sync-in batch:")]
    assert batches and all(e["level"] == "INFO" and e["logger"] == "syncflow.agents.sync_in_handler" for e in batches)
    assert sum(e["records"] for e in batches) == len(stream.records)
    assert sum(e["dead_lettered"] for e in batches) == len(invalid)
    assert sum(e["versions"] + e["unchanged"] for e in batches) == len(stream.records) - len(invalid)
    dead = {e["trace_id"]: e["message"] for e in entries if e["level"] == "WARNING" and "dead-lettered" in e["message"]}
    assert set(dead) == set(invalid)
    for trace_id, identity in invalid.items():
        assert identity in dead[trace_id], dead[trace_id]
