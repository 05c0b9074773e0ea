"""The poison matrix for sync-in: a running worker (a real subprocess on the real stack) gets
every kind of input no source should send, each between two valid records on the same
partition. Each bad record must land in sync-in.dlq with its category and a reason a person
understands, the valid records around it must be applied, the worker must be ready again,
and the group's lag must drain to 0. One record must never stop the line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from syncflow.agents.rules import RulesEngine
from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity, generate_world
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.avro import codec_for
from syncflow.streams.dead_letters import VALUE_REPLACED, read_failure_headers
from syncflow.streams.headers import TRACE_ID
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic
from tests.integration.agents.test_sync_in_worker import free_port, read_topic, tail

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CASE = "poison-case"  # a header of the test's own: DLQ records carry the record's headers


@dataclass(frozen=True)
class Poison:
    """One bad record: what it is, what goes on the topic, and what the DLQ must say."""

    name: str
    topic_source: str
    key: bytes | None
    value: bytes | None
    categories: tuple[str, ...]
    reason: str  # a piece of the exception message a person would look for
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Worker:
    proc: subprocess.Popen
    log: IO[str]
    port: int

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=3) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, and SIGKILL when it has not exited within `timeout`; the log is closed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_worker(settings: Settings, suffix: str, group: str, tmp: Path, **extra_env: str) -> Worker:
    """A sync-in worker subprocess on the test's topics, schema and raw database."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        SYNCFLOW_DATABASE_URL=settings.database_url,
        SYNCFLOW_DATABASE_SCHEMA=settings.database_schema,
        SYNCFLOW_MONGO_URL=settings.mongo_url,
        SYNCFLOW_MONGO_DATABASE=settings.mongo_database,
        SYNCFLOW_SYNC_IN__BATCH_SIZE="50",
        SYNCFLOW_SYNC_IN__SESSION_TIMEOUT_S="6",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    if settings.schema_registry_url:
        env["SYNCFLOW_SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    env.update(extra_env)
    log = (tmp / f"sync-in-{port}.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncflow.cli.sync_in", "run", "--web-port", str(port), "--group-id", group,
         "--topic-suffix", suffix, "--loglevel", "warning"],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return Worker(proc, log, port)


def valid_pool() -> list[Entity]:
    world = generate_world(seed=23, volume=120)
    return [e for e in world.entities.values() if e.invalid is None and not e.deleted and e.source == "yardi"]


def with_field(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of a rendered source record with one (dotted) field replaced."""
    out = json.loads(json.dumps(record))
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def poison_cases(settings: Settings, encode: Callable[[str, str, dict[str, Any]], bytes], pool: list[Entity]) -> list[Poison]:
    by_type: dict[str, Entity] = {}
    for e in pool:
        by_type.setdefault(e.entity_type, e)
    loc, res, sr = by_type["location"], by_type["resident"], by_type["service_request"]

    def bad(name: str, entity: Entity, record: dict[str, Any], categories: tuple[str, ...], reason: str,
            *, source_id: str | None = None, headers: tuple[tuple[str, bytes], ...] = ()) -> Poison:
        sid = source_id or f"{entity.source_id}-{name}"
        return Poison(name, "yardi", raw_key(entity.entity_type, sid).encode(),
                      encode("yardi", entity.entity_type, record), categories, reason, headers)

    loc_rec, res_rec, sr_rec = render(loc), render(res), render(sr)
    max_bytes = settings.kafka_max_message_bytes
    surrogate = encode("yardi", "location", with_field(loc_rec, "Address.City", "SURR"))
    # "SURR" is 4 bytes; a lone surrogate in the CESU form a careless producer writes is 3 + 1
    surrogate = surrogate.replace(b"SURR", b"\xed\xa0\x80x")
    cases = [
        bad("city-101", loc, with_field(loc_rec, "Address.City", "C" * 101), ("validation",), "city"),
        bad("name-301", loc, with_field(loc_rec, "MarketingName", "N" * 301), ("validation",), "name"),
        bad("state-11", loc, with_field(loc_rec, "Address.State", "S" * 11), ("validation",), "state"),
        bad("first-name-201", res, with_field(res_rec, "Name.FirstName", "F" * 201), ("validation",), "first_name"),
        bad("requestor-201", sr, with_field(sr_rec, "RequestorName", "R" * 201), ("validation",), "requestor_name"),
        bad("nul", sr, with_field(sr_rec, "FullDescription", "water\x00leak"), ("validation",), "NUL"),
        bad("nul-in-name", res, with_field(res_rec, "Name.LastName", "K\x00m"), ("validation",), "NUL"),
        bad("rent-out-of-range", loc, with_field(with_field(loc_rec, "RecordType", "Unit"), "MarketRent", "1000000000000000.00"),
            ("validation",), "market_rent"),
        bad("date-out-of-range", sr, with_field(sr_rec, "ServiceRequestDate", "99999-01-01T00:00:00"),
            ("validation",), "timestamp"),
        bad("source-id-201", loc, loc_rec, ("validation", "bad-key"), "source_id", source_id="s" * 201),
        bad("entity-id-101", loc, with_field(with_field(loc_rec, "LocationId", "L" * 101), "PropertyCode", "P" * 101),
            ("validation",), "property_code"),
        bad("trace-id-101", res, res_rec, ("validation",), "trace_id", headers=((TRACE_ID, b"t" * 101),)),
        # quotes double in the snapshot's JSON text: a record that fits its raw topic, an event that would not
        bad("event-too-large", sr, with_field(sr_rec, "FullDescription", '"' * (max_bytes * 6 // 10)),
            ("too-large",), "bytes"),
        Poison("near-limit-invalid", "yardi", raw_key("resident", "near-limit").encode(),
               encode("yardi", "resident", res_rec) + b"\x01" * (max_bytes - 1_000), ("decode", "record-crash"), "byte"),
        Poison("lone-surrogate", "yardi", raw_key("location", "surrogate").encode(), surrogate,
               ("decode", "record-crash", "validation"), "utf"),
        Poison("wrong-schema", "yardi", raw_key("location", "wrong-schema").encode(),
               encode("yardi", "resident", res_rec), ("validation", "schema-mismatch", "decode", "record-crash"), ""),
        Poison("confluent-unknown-id", "yardi", raw_key("location", "confluent").encode(),
               b"\x00" + (987_654_321).to_bytes(4, "big") + b"\x02ab", ("unknown-schema", "decode"), "987654321"),
        Poison("empty-value", "yardi", raw_key("location", "empty").encode(), b"", ("decode",), "byte"),
        Poison("tombstone", "yardi", raw_key("location", "tombstone").encode(), None, ("bad-key",), "no value"),
        Poison("garbage", "yardi", raw_key("location", "garbage").encode(), b"<html>502 Bad Gateway</html>",
               ("decode",), "single-object"),
        Poison("key-not-utf8", "yardi", b"location:\xff\xfe", encode("yardi", "location", loc_rec), ("bad-key",), "UTF-8"),
        Poison("unknown-entity-type", "yardi", b"invoice:1", encode("yardi", "location", loc_rec), ("bad-key",), "unknown"),
        Poison("no-key", "yardi", None, encode("yardi", "location", loc_rec), ("bad-key",), "no key"),
    ]
    return cases


@pytest.fixture
def world(settings: Settings, unique: Callable[[str], str], tmp_path: Path) -> Iterator[tuple[Settings, str, Path]]:
    suffix = unique("")
    specs = [TopicSpec(raw_topic(s) + suffix, 2, 3600_000) for s in SOURCES]
    specs += [TopicSpec(changes_topic(e) + suffix, 2, 3600_000) for e in ENTITY_TYPES]
    specs.append(TopicSpec(SYNC_IN_DLQ + suffix, 1, 3600_000))
    create_topics(settings, specs)
    migrate(settings)
    try:
        yield settings, suffix, tmp_path
    finally:
        delete_topics(settings, [s.name for s in specs])


def lag(settings: Settings, group: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        total = 0
        for tp in consumer.committed(tps, timeout=10):
            end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            total += end - max(tp.offset, 0)
        return total
    finally:
        consumer.close()


def wait_for(done: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode} while waiting for {what}:\n{tail(worker.log)}")
        if done():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{tail(worker.log)}")


def test_every_kind_of_poison_is_dead_lettered_and_the_valid_records_around_it_flow(
    world: tuple[Settings, str, Path], unique: Callable[[str], str]
) -> None:
    settings, suffix, tmp = world
    codec = codec_for(settings)
    topic = raw_topic("yardi") + suffix

    def encode(source: str, entity_type: str, record: dict[str, Any]) -> bytes:
        return codec.encode(schema_name(source, entity_type), record, topic=topic)

    pool = valid_pool()
    cases = poison_cases(settings, encode, pool)
    valid = pool[: 2 * len(cases) + 2]
    assert len(valid) == 2 * len(cases) + 2, "the emulated world is too small for the matrix"
    # every record on partition 0: each bad one sits between two valid ones it must not block
    out: list[OutgoingRecord] = []
    for i, case in enumerate(cases):
        for entity in (valid[2 * i], valid[2 * i + 1]):
            out.append(OutgoingRecord(topic, raw_key(entity.entity_type, entity.source_id).encode(),
                                      encode("yardi", entity.entity_type, render(entity)), [], partition=0))
        out.append(OutgoingRecord(topic, case.key, case.value,
                                  [(CASE, case.name.encode()), *case.headers], partition=0))
    for entity in valid[-2:]:
        out.append(OutgoingRecord(topic, raw_key(entity.entity_type, entity.source_id).encode(),
                                  encode("yardi", entity.entity_type, render(entity)), [], partition=0))
    producer = ReliableProducer(settings)
    producer.send_all(out)

    group = unique("sync-in-poison")
    worker = start_worker(settings, suffix, group, tmp)
    engine = make_engine(settings)
    rules = RulesEngine.from_file(settings.sync_in.rules_file)
    expected = {(c.entity_type, c.entity_id) for c in (rules.transform("yardi", e.entity_type, render(e)) for e in valid)}
    try:
        raw_topics = [raw_topic(s) + suffix for s in SOURCES]
        wait_for(lambda: lag(settings, group, raw_topics) == 0, 240, "the group's lag to drain", worker)
        wait_for(worker.ready, 30, "the worker to be ready", worker)
        with engine.connect() as conn:
            applied = {(t, e) for t, e in conn.execute(text("SELECT entity_type, entity_id FROM data_versions"))}
        assert expected <= applied, f"valid records not applied: {sorted(expected - applied)[:5]}"
        dead = {}
        for msg in read_topic(settings, SYNC_IN_DLQ + suffix):
            name = dict(msg.headers() or []).get(CASE, b"").decode()
            dead[name] = (read_failure_headers(msg.headers()), msg)
        problems = []
        for case in cases:
            if case.name not in dead:
                problems.append(f"{case.name}: not in the DLQ")
                continue
            failure, msg = dead[case.name]
            if failure.get("error.category") not in case.categories:
                problems.append(f"{case.name}: category {failure.get('error.category')} not in {case.categories}: "
                                f"{failure.get('exception.message', '')[:300]}")
            elif case.reason.lower() not in failure.get("exception.message", "").lower():
                problems.append(f"{case.name}: reason lacks {case.reason!r}: {failure.get('exception.message', '')[:300]}")
            if failure.get("original.topic") != topic or not failure.get("original.offset", "").isdigit():
                problems.append(f"{case.name}: no origin in its DLQ headers")
        assert not problems, "\n".join(problems)
        assert len(dead) == len(cases), f"unexpected DLQ records: {sorted(set(dead) - {c.name for c in cases})}"
        near = dead["near-limit-invalid"][1]
        assert dict(near.headers())[VALUE_REPLACED] == b"pointer"
    finally:
        engine.dispose()
        worker.stop()


def test_a_worker_whose_batch_keeps_failing_still_stops_when_asked(
    world: tuple[Settings, str, Path], unique: Callable[[str], str]
) -> None:
    """A batch failing on infrastructure is retried (never skipped), and the worker stays
    not-ready; SIGTERM must still stop it within its shutdown time, leaving the batch
    unacknowledged for whoever takes the partition next."""
    settings, suffix, tmp = world
    codec = codec_for(settings)
    topic = raw_topic("yardi") + suffix
    entity = valid_pool()[0]
    engine = make_engine(settings)
    with engine.begin() as conn:  # the versions table goes away: every batch fails until it is back
        conn.execute(text("ALTER TABLE data_versions RENAME TO data_versions_away"))
    group = unique("sync-in-stuck")
    worker = start_worker(settings, suffix, group, tmp)
    try:
        ReliableProducer(settings).send_all([OutgoingRecord(
            topic, raw_key(entity.entity_type, entity.source_id).encode(),
            codec.encode(schema_name("yardi", entity.entity_type), render(entity), topic=topic), [], partition=0)])
        wait_for(lambda: "retrying" in tail(worker.log), 120, "the batch to fail and be retried", worker)
        assert not worker.ready()
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not stop within 45 s of SIGTERM:\n{tail(worker.log)}")
        print(f"stopped in {time.monotonic() - started:.1f}s with exit code {code}")
        raw_topics = [raw_topic(s) + suffix for s in SOURCES]
        assert lag(settings, group, raw_topics) == 1  # the failing batch was not acknowledged
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        worker.log.close()
        engine.dispose()
