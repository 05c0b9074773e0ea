"""Sync-in benchmark on the real stack: N records (mixed sources and entity types; ~10%
updates, ~5% unchanged re-sends, ~2% invalid) are produced to raw topics of their own,
sync-in worker subprocesses (one per core by default) drain them, and the run reports the
sustained rate, the produce -> committed-version latency of a paced trickle afterwards, each
worker's peak RSS, where the workers' time went, and three baselines from the same data: a
bare confluent-kafka consume of the raw topics, a bare bulk upsert of the version rows into
PostgreSQL and a bare bulk insert of the raw documents into the raw store. The slowest of the
three is the bound: sync-in can go no faster than its slowest part.

A record counts as done only when its version, its change event and its raw document with its
final status are written: the drain ends when the group has committed every raw record, every
version has its change event on the changes topics and every record's raw document (the last
record of each key) holds a final inbound status.

    .venv/bin/python bench/sync_in.py --records 100000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg2.extras import execute_values
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncflow.connectors.schemas import schema_name  # noqa: E402
from syncflow.emulators.sources.render import render  # noqa: E402
from syncflow.emulators.sources.world import Entity, apply_changes, generate_world  # noqa: E402
from syncflow.sinks.common_db.migrate import migrate  # noqa: E402
from syncflow.sinks.raw_store import COLLECTION as RAW_COLLECTION, COMPLETED, FAILED, RawRecordStore  # noqa: E402
from bench import names  # noqa: E402
from bench.baselines import bare_consume, percentile  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure, write_json  # noqa: E402
from syncflow.streams.admin import create_topics, delete_topics  # noqa: E402
from syncflow.streams.avro import codec_for  # noqa: E402
from syncflow.streams.headers import ENTITY_TYPE, SOURCE_SYSTEM, TRACE_ID  # noqa: E402
from syncflow.streams.producer import OutgoingRecord, ReliableProducer  # noqa: E402
from syncflow.streams.security import kafka_client_config  # noqa: E402
from syncflow.settings import Settings  # noqa: E402
from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SYNC_IN_DLQ, TopicSpec, changes_topic, raw_key, raw_topic  # noqa: E402


@dataclass
class Workload:
    records: list[OutgoingRecord]
    kinds: dict[str, int]

    def last_traces(self) -> set[str]:
        """The trace id of the last record of each key: the one its raw document ends with."""
        last: dict[tuple[str, bytes], str] = {}
        for r in self.records:
            trace = next(v.decode() for k, v in r.headers if k == TRACE_ID)
            last[(r.topic, r.key)] = trace
        return set(last.values())


def build_workload(settings: Settings, n: int, suffix: str, seed: int = 1) -> Workload:
    """~83% first sends, ~10% updates, ~5% unchanged re-sends, ~2% invalid (world faults)."""
    codec = codec_for(settings)
    volume = max(10, int(n * 0.83 / 3.3))  # a world unit brings ~3.3 records
    world = generate_world(seed=seed, volume=volume, invalid_rate=0.02)
    entities = list(world.entities.values())
    rng = random.Random(seed)
    sends: list[tuple[Entity, dict[str, Any]]] = [(e, render(e)) for e in entities]
    per_source = max(1, int(n * 0.10) // len(SOURCES))
    for source in SOURCES:
        sends += [(e, render(e)) for e in apply_changes(world, source, per_source)]
    updates = len(sends) - len(entities)
    resends = [rng.choice(sends[-max(1, updates):]) for _ in range(int(n * 0.05))]
    sends += resends
    records = []
    for i, (entity, record) in enumerate(sends[:n]):
        topic = raw_topic(entity.source) + suffix
        headers = [(SOURCE_SYSTEM, entity.source.encode()), (ENTITY_TYPE, entity.entity_type.encode()),
                   (TRACE_ID, f"b{i}".encode())]
        value = codec.encode(schema_name(entity.source, entity.entity_type), record, topic=topic)
        records.append(OutgoingRecord(topic, raw_key(entity.entity_type, entity.source_id).encode(), value, headers))
    invalid = sum(1 for e, _ in sends[:n] if e.invalid)
    return Workload(records, {"first sends": len(entities), "updates": updates, "re-sends": len(resends), "invalid (at send)": invalid})


def committed_to_end(settings: Settings, group: str, topics: list[str]) -> tuple[int, int]:
    consumer = Consumer(kafka_client_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        done = total = 0
        for tp in consumer.committed(tps, timeout=10):
            end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            total += end
            done += min(end, max(tp.offset, 0))
        return done, total
    finally:
        consumer.close()


def unpublished_versions(settings: Settings, suffix: str) -> int:
    """Versions in the common database without a change event on the changes topics yet."""
    engine = create_engine(settings.database_url, connect_args={"options": f"-csearch_path={settings.database_schema}"})
    try:
        with engine.connect() as conn:
            versions = int(conn.execute(text("SELECT count(*) FROM data_versions")).scalar() or 0)
    finally:
        engine.dispose()
    events = committed_to_end(settings, f"bench-events-{uuid.uuid4().hex[:8]}", [changes_topic(e) + suffix for e in ENTITY_TYPES])[1]
    return max(0, versions - events)


def unfinished_raw_documents(settings: Settings, last_traces: set[str]) -> int:
    """Records whose raw document does not yet hold them with a final inbound status."""
    client: MongoClient = MongoClient(settings.mongo_url, tz_aware=True)
    try:
        docs = client[settings.mongo_database][RAW_COLLECTION].find({}, {"metadata.traceId": 1, "syncStatus.inbound": 1})
        final = {(d.get("metadata") or {}).get("traceId") for d in docs
                 if (d.get("syncStatus") or {}).get("inbound") in (COMPLETED, FAILED)}
    finally:
        client.close()
    return len(last_traces - final)


def wait_until_stored(settings: Settings, suffix: str, last_traces: set[str], timeout_s: float) -> tuple[float | None, bool]:
    """Called once the group has committed every raw record: when every change event and raw
    document is written too. (None, True) when the first look finds them all (they were there
    when the commit was seen); (the moment a later look found them, True); (None, False) when
    they were still missing after `timeout_s`."""
    deadline = time.perf_counter() + timeout_s
    first = True
    while True:
        try:
            missing_events = unpublished_versions(settings, suffix)
            missing_raw = unfinished_raw_documents(settings, last_traces)
        except (KafkaException, PyMongoError, SQLAlchemyError) as exc:  # a store restarted by another run
            missing_events, missing_raw = -1, -1
            print(f"stores not read ({type(exc).__name__}); looking again", file=sys.stderr)
        if missing_events == 0 and missing_raw == 0:
            return (None if first else time.perf_counter()), True
        if missing_events >= 0:
            print(f"committed, but {missing_events} change event(s) and {missing_raw} raw document(s) not written yet",
                  file=sys.stderr)
        if time.perf_counter() > deadline:
            return None, False
        first = False
        time.sleep(0.5)


def bare_upsert(settings: Settings, batch_size: int) -> tuple[float, int]:
    """The version snapshots, upserted in batches into a scratch table: one INSERT ... VALUES
    ... ON CONFLICT per batch (psycopg2 execute_values), a transaction per batch."""
    engine = create_engine(settings.database_url, connect_args={"options": f"-csearch_path={settings.database_schema}"})
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT entity_type, entity_id, source_system, data_hash, data_snapshot::text FROM data_versions")).all()
        conn.execute(text("CREATE TABLE bench_upsert (entity_type text, entity_id text, source_system text, data_hash text, "
                          "data jsonb, PRIMARY KEY (entity_type, entity_id, source_system))"))
    params = [tuple(r) for r in rows]
    sql = ("INSERT INTO bench_upsert VALUES %s ON CONFLICT (entity_type, entity_id, source_system) "
           "DO UPDATE SET data_hash = excluded.data_hash, data = excluded.data")
    raw = engine.raw_connection()
    started = time.perf_counter()
    try:
        for i in range(0, len(params), batch_size):
            chunk = {(p[0], p[1], p[2]): p for p in params[i:i + batch_size]}  # one row per key per statement
            with raw.cursor() as cur:
                execute_values(cur, sql, list(chunk.values()), template="(%s, %s, %s, %s, %s::jsonb)", page_size=batch_size)
            raw.commit()
    finally:
        raw.close()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return (len(params) / elapsed if elapsed else float("nan")), len(params)


def bare_raw_insert(settings: Settings, batch_size: int) -> tuple[float, int]:
    """The raw documents sync-in wrote, inserted in batches into a scratch collection with the
    raw store's indexes: one insert_many per batch, the fastest write the raw store has."""
    client = MongoClient(settings.mongo_url, tz_aware=True)
    try:
        db = client[settings.mongo_database]
        docs = list(db[RAW_COLLECTION].find())
        scratch = RawRecordStore(settings.model_copy(update={"mongo_database": settings.mongo_database + "-bare"}))
        try:
            scratch.ensure_indexes()
            started = time.perf_counter()
            for i in range(0, len(docs), batch_size):
                scratch.collection.insert_many(docs[i:i + batch_size], ordered=False)
            elapsed = time.perf_counter() - started
        finally:
            scratch.close()
            client.drop_database(settings.mongo_database + "-bare")
    finally:
        client.close()
    return (len(docs) / elapsed if elapsed else float("nan")), len(docs)


def scrape_steps(port: int) -> dict[str, float]:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'syncflow_sync_in_step_seconds_total\{step="([^"]+)"\} ([0-9.e+-]+)', body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="sync-in worker processes in the group (one per core)")
    parser.add_argument("--trickle", type=int, default=500, help="records produced one by one for the latency figures")
    parser.add_argument("--trickle-rate", type=float, default=100.0, help="records/s of the trickle")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep topics, schema and raw database")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()

    base = Settings.load()
    token = uuid.uuid4().hex[:8]
    suffix, group, port = f"-bench-{token}", f"sync-in-bench-{token}", 6190 + random.randrange(50)
    settings = base.model_copy(update={"database_schema": f"bench_{token}", "mongo_database": f"bench-{token}",
                                       "sync_in": base.sync_in.model_copy(update={"topic_suffix": suffix, "group_id": group})})
    raw_topics = [raw_topic(s) + suffix for s in SOURCES]
    specs = [TopicSpec(t, args.partitions, 24 * 3600_000) for t in raw_topics]
    specs += [TopicSpec(changes_topic(e) + suffix, args.partitions, 24 * 3600_000) for e in ENTITY_TYPES]
    specs.append(TopicSpec(SYNC_IN_DLQ + suffix, 1, 24 * 3600_000))
    create_topics(settings, specs)
    migrate(settings)
    try:
        run(args, settings, suffix, group, port, token, raw_topics)
    finally:
        if not args.keep:
            cleanup(settings, specs)


def run(args: argparse.Namespace, settings: Settings, suffix: str, group: str, port: int, token: str,
        raw_topics: list[str]) -> None:
    """Produce the workload, drain it with a worker, take the figures and print them."""

    print(f"building {args.records} records ...", file=sys.stderr)
    workload = build_workload(settings, args.records, suffix)
    producer = ReliableProducer(settings)
    t0 = time.perf_counter()
    producer.send_all(workload.records, timeout=600)
    produce_rate = len(workload.records) / (time.perf_counter() - t0)

    env = dict(os.environ, SYNCFLOW_DATABASE_SCHEMA=settings.database_schema, SYNCFLOW_MONGO_DATABASE=settings.mongo_database,
               SYNCFLOW_SYNC_IN__BATCH_SIZE=str(args.batch_size), PYTHONPATH=str(REPO))
    log = open(f"/tmp/sync-in-bench-{token}.log", "w")
    ports = [port + i for i in range(args.workers)]
    workers = [
        subprocess.Popen([sys.executable, "-m", "syncflow.cli.sync_in", "run", "--web-port", str(p), "--group-id", group,
                          "--topic-suffix", suffix, "--loglevel", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
        for p in ports
    ]
    procs = [psutil.Process(w.pid) for w in workers]
    peaks = [0] * len(procs)  # bytes, per worker
    started, first_progress = time.perf_counter(), None

    def sample_rss() -> None:
        for i, proc in enumerate(procs):
            with contextlib.suppress(psutil.Error):  # a worker that has exited keeps its last peak
                peaks[i] = max(peaks[i], proc.memory_info().rss)

    total = len(workload.records)
    try:
        while True:
            sample_rss()
            try:
                done, _ = committed_to_end(settings, group, raw_topics)
            except KafkaException as exc:  # a broker restart by another run: look again
                if time.perf_counter() - started > args.timeout:
                    raise
                print(f"progress not read ({exc}); looking again", file=sys.stderr)
                time.sleep(1.0)
                continue
            if done and first_progress is None:
                first_progress = (time.perf_counter(), done)
            if done >= total:
                break
            if any(w.poll() is not None for w in workers) or time.perf_counter() - started > args.timeout:
                raise SystemExit(f"worker stopped or timed out at {done}/{total}; log /tmp/sync-in-bench-{token}.log")
            time.sleep(1.0)
        drained = time.perf_counter()
        stored_at, stored = wait_until_stored(settings, suffix, workload.last_traces(), timeout_s=120)
        drained = stored_at or drained
        if not stored:
            print("change events or raw documents still missing 120 s after the commit: no sustained rate", file=sys.stderr)
        sample_rss()
        # sustained rate: from the first committed batch (start-up and group join excluded) to the end
        t_first, n_first = first_progress or (started, 0)
        sustained = (total - n_first) / max(drained - t_first, 1e-9) if stored else float("nan")
        steps: dict[str, float] = {}
        for p in ports:
            for name, seconds in scrape_steps(p).items():
                steps[name] = steps.get(name, 0.0) + seconds

        # latency: a paced trickle of fresh updates after the backlog, produce -> version commit
        trickle_ids: dict[str, float] = {}
        codec = codec_for(settings)
        world = generate_world(seed=99, volume=max(10, args.trickle // 3))
        trickle = [e for e in world.entities.values() if not e.invalid][: args.trickle]
        for i, e in enumerate(trickle):
            trace = f"lat{i}"
            topic = raw_topic(e.source) + suffix
            rec = OutgoingRecord(topic, raw_key(e.entity_type, f"lat-{e.source_id}").encode(),
                                 codec.encode(schema_name(e.source, e.entity_type), render(e), topic=topic),
                                 [(TRACE_ID, trace.encode())])
            trickle_ids[trace] = time.time()
            producer.send_all([rec])
            sample_rss()
            time.sleep(1.0 / args.trickle_rate)
        engine = create_engine(settings.database_url, connect_args={"options": f"-csearch_path={settings.database_schema}"})
        # the trickle is done when the worker has committed it (records that change nothing
        # make no version, so counting versions would wait for ones that never come)
        deadline = time.monotonic() + 120
        while committed_to_end(settings, group, raw_topics)[0] < total + len(trickle) and time.monotonic() < deadline:
            time.sleep(0.5)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT trace_id, extract(epoch FROM created_date) FROM data_versions WHERE trace_id LIKE 'lat%'")).all()
        latencies = [float(ts) - trickle_ids[t] for t, ts in rows if t in trickle_ids]
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT count(*) FROM data_versions")).scalar()
        engine.dispose()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        log.close()

    consume_rate = bare_consume(kafka_client_config(settings), raw_topics).rate
    upsert_rate, upsert_rows = bare_upsert(settings, args.batch_size)
    raw_rate, raw_docs = bare_raw_insert(settings, args.batch_size)
    dlq = committed_to_end(settings, f"bench-dlq-{token}", [SYNC_IN_DLQ + suffix])[1]

    parts = {"bare confluent-kafka consume": consume_rate, "bare PostgreSQL bulk upsert": upsert_rate,
             "bare raw-store bulk insert": raw_rate}
    slowest = min(parts, key=lambda name: parts[name] if parts[name] == parts[name] else float("inf"))
    step_total = sum(steps.values()) or 1.0
    print(f"\n## sync-in benchmark ({total} records, batch {args.batch_size}, {args.partitions} partitions/raw topic, {args.workers} worker(s))\n")
    print("| measure | value |\n|---|---|")
    print(f"| workload | {', '.join(f'{k}: {v}' for k, v in workload.kinds.items())} |")
    print(f"| produce rate (setup) | {produce_rate:,.0f} records/s |")
    print(f"| sync-in sustained | **{sustained:,.0f} records/s** ({total} records in {drained - started:.1f}s incl. start-up; "
          f"{'version, change event and raw document of each checked' if stored else 'STORES NOT CONFIRMED'}) |")
    print(f"| bound (slowest bare part: {slowest}) | {parts[slowest]:,.0f} records/s (sync-in = {sustained / parts[slowest]:.1%} of it) |")
    print(f"| versions written / DLQ records | {versions} / {dlq} |")
    print(f"| latency produce -> committed version (trickle of {len(latencies)} at {args.trickle_rate:g}/s) | p50 {percentile(latencies, 50) * 1000:,.0f} ms, p99 {percentile(latencies, 99) * 1000:,.0f} ms |")
    print(f"| worker peak RSS | {', '.join(f'{p / 2**20:,.0f} MiB' for p in peaks)} |")
    print(f"| bare confluent-kafka consume | {consume_rate:,.0f} records/s (sync-in = {sustained / consume_rate:.1%} of it) |")
    print(f"| bare PostgreSQL bulk upsert ({upsert_rows} rows) | {upsert_rate:,.0f} rows/s (sync-in = {sustained / upsert_rate:.1%} of it) |")
    print(f"| bare raw-store bulk insert ({raw_docs} documents) | {raw_rate:,.0f} documents/s (sync-in = {sustained / raw_rate:.1%} of it) |")
    print("\nWhere the worker's batch time went:\n\n| step | seconds | share |\n|---|---|---|")
    for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:,.1f} | {seconds / step_total:.0%} |")

    if args.json:
        figures = [
            Figure(names.SYNC_IN_RATE_VS_BOUND, sustained, "records/s", Baseline(f"bound: {slowest}", parts[slowest], "records/s")),
            Figure(names.SYNC_IN_RATE_VS_CONSUME, sustained, "records/s", Baseline("bare confluent-kafka consume", consume_rate, "records/s")),
            Figure(names.SYNC_IN_RATE_VS_UPSERT, sustained, "records/s", Baseline("bare PostgreSQL bulk upsert", upsert_rate, "rows/s")),
            Figure(names.SYNC_IN_RATE_VS_RAW, sustained, "records/s", Baseline("bare raw-store bulk insert", raw_rate, "documents/s")),
            Figure(names.SYNC_IN_LATENCY_P50, percentile(latencies, 50) * 1000, "ms"),
            Figure(names.SYNC_IN_LATENCY_P99, percentile(latencies, 99) * 1000, "ms"),
            Figure(names.SYNC_IN_LARGEST_RSS, max(peaks) / 2**20, "MiB"),
            *(Figure(names.sync_in_worker_rss(i + 1), p / 2**20, "MiB") for i, p in enumerate(peaks)),
        ]
        params = {"records": total, "requested_records": args.records, "batch_size": args.batch_size,
                  "partitions": args.partitions, "workers": args.workers, "trickle": len(latencies), "trickle_rate": args.trickle_rate,
                  "versions": versions, "dlq_records": dlq, "bare_upsert_rows": upsert_rows, "bare_raw_documents": raw_docs,
                  "stores_confirmed": stored, "slowest_bare_part": slowest,
                  "step_seconds": {k: round(v, 1) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])}}
        write_json(args.json, BenchResult("sync-in", params, figures))


def cleanup(settings: Settings, specs: list[TopicSpec]) -> None:
    """Drop the run's topics, schema and raw database (also after a failed run)."""
    delete_topics(settings, [s.name for s in specs])
    eng = create_engine(settings.database_url)
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    eng.dispose()
    MongoClient(settings.mongo_url).drop_database(settings.mongo_database)

if __name__ == "__main__":
    main()
