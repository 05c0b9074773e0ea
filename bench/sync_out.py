"""Sync-out benchmark on the local stack.

    .venv/bin/python bench/sync_out.py [--events 20000] [--seconds 60] [--rate-per-minute 1200] [--json out.json]

1. throughput: a backlog of change events drained into an unthrottled emulator (ONE: one PUT
   per record; Lessen360: batch calls) by 1, 2, ... worker processes of one group
   (`syncflow sync-out run`, as deployed; --workers), deliveries/s, and each worker's peak RSS;
2. latency: events produced at a steady pace while the worker runs, change event → applied at
   the target, p50/p99;
3. rate limit: two workers of one group against a limit, the measured rate over --seconds.

Baselines from the same run: the same requests sent straight to the same emulator with bare
aiohttp at the same concurrency (no Kafka, no database), and one at a time for the latency
floor; the rate-limit run is compared with the configured limit. The latency and rate-limit
workers run inside this process.

Everything runs on its own topics, consumer groups and PostgreSQL schema, removed afterwards.
The emulators run in a separate process (`syncflow sync-out emulate`). Prints Markdown;
--json writes the figures in bench/figures.py's format."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
from pymongo import MongoClient
from sqlalchemy import create_engine, text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import names  # noqa: E402
from bench.baselines import Call, HttpRun, bare_http, median, percentile  # noqa: E402
from bench.figures import Baseline, BenchResult, Figure, print_table, write_json  # noqa: E402

from syncflow.streams.topics import TopicSpec, changes_topic, sync_out_topics  # noqa: E402
from syncflow.roles.sync_out import build_worker  # noqa: E402
from syncflow.model import ChangeEvent  # noqa: E402
from syncflow.agents.sync_out.registry import binding_for  # noqa: E402
from syncflow.sinks.common_db.migrate import migrate  # noqa: E402
from syncflow.streams.admin import create_topics, delete_topics  # noqa: E402
from syncflow.streams.avro import codec_for  # noqa: E402
from syncflow.streams.headers import PRIORITY  # noqa: E402
from syncflow.streams.producer import OutgoingRecord, ReliableProducer  # noqa: E402
from syncflow.streams.security import kafka_client_config  # noqa: E402
from syncflow.settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str) -> Any:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def location_event(entity_id: str, n: int) -> dict[str, Any]:
    snapshot = {"entity_id": entity_id, "location_type": "unit", "property_code": "P1", "unit_code": f"U{n}",
                "name": f"Unit {n}", "city": "Austin", "state": "TX", "postal_code": "78701"}
    return {"event_id": f"{entity_id}:1", "entity_type": "location", "entity_id": entity_id, "version": 1,
            "change_type": "create", "origin_source": "yardi", "origin_source_id": f"Y-{n}", "priority": 5,
            "changed_fields": [], "snapshot": json.dumps(snapshot), "references": {},
            "occurred_at": int(time.time() * 1000), "trace_id": None}


class Bench:
    def __init__(self, base: Settings, args: argparse.Namespace):
        self.args = args
        self.token = uuid.uuid4().hex[:8]
        self.ports = {"one": free_port(), "lessen360": free_port()}
        schema = f"bench_{self.token}"
        targets = {name: base.sync_out.targets[name].model_copy(update={
            "base_url": f"http://127.0.0.1:{port}", "rate_per_minute": 6_000_000.0, "concurrency": args.concurrency,
            "batch_max": 100, "entity_types": ["location"]}) for name, port in self.ports.items()}
        sync_out = base.sync_out.model_copy(update={
            "targets": targets, "batch_size": args.batch_size, "buffer_max": max(5000, 2 * args.batch_size),
            "batches_in_flight": args.batches_in_flight, "poll_timeout_s": 0.05})
        self.base = base.model_copy(update={"database_schema": schema, "mongo_database": f"bench-{self.token}",
                                            "sync_out": sync_out})
        self.peak_rss: dict[str, int] = {}  # worker process name -> bytes
        self.emulators: subprocess.Popen[bytes] | None = None
        self.topics: list[str] = []
        self.figures: list[Figure] = []
        self.notes: dict[str, Any] = {}
        self.codec = codec_for(self.base)
        self.producer = ReliableProducer(self.base)

    # -- set-up ---------------------------------------------------------------------------------
    def __enter__(self) -> "Bench":
        engine = create_engine(self.base.database_url)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.base.database_schema}"'))
        engine.dispose()
        migrate(self.base)
        env = {**os.environ, "SYNCFLOW_LOG_LEVEL": "WARNING"}
        for name, port in self.ports.items():
            env[f"SYNCFLOW_SYNC_OUT__TARGETS__{name.upper()}__BASE_URL"] = f"http://127.0.0.1:{port}"
        self.emulators = subprocess.Popen([sys.executable, "-m", "syncflow", "sync-out", "emulate"], env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                for port in self.ports.values():
                    http("GET", f"http://127.0.0.1:{port}/_emulator/state")
                break
            except OSError:
                time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        if self.emulators is not None:
            self.emulators.terminate()
            self.emulators.wait(10)
        delete_topics(self.base, self.topics)
        engine = create_engine(self.base.database_url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.base.database_schema}" CASCADE'))
        engine.dispose()
        client: MongoClient = MongoClient(self.base.mongo_url, serverSelectionTimeoutMS=10000)
        client.drop_database(self.base.mongo_database)  # the workers' outbound statuses
        client.close()

    def scenario(self, name: str, **target_update: Any) -> Settings:
        """Settings with fresh topics and group for one scenario."""
        suffix = f"-bench-{self.token}-{name}"
        s = self.base.model_copy(update={"sync_out": self.base.sync_out.model_copy(update={"topic_suffix": suffix})})
        if target_update:
            so = s.sync_out
            targets = {k: v.model_copy(update=target_update) for k, v in so.targets.items()}
            s = s.model_copy(update={"sync_out": so.model_copy(update={"targets": targets})})
        names = [changes_topic("location") + suffix]  # the only entity type the bench targets take
        for target in self.ports:
            t = sync_out_topics(s, target)
            names += t.retries + [t.dlq]
        create_topics(s, [TopicSpec(n, 4 if n.startswith("changes.") else 2, 3600_000) for n in names])
        self.topics += names
        for port in self.ports.values():
            http("POST", f"http://127.0.0.1:{port}/_emulator/reset")
        return s

    def produce(self, s: Settings, events: list[dict[str, Any]]) -> None:
        topic = changes_topic("location") + s.sync_out.topic_suffix
        self.producer.send_all([
            OutgoingRecord(topic, e["entity_id"].encode(), self.codec.encode("io.syncflow.canonical.ChangeEvent", e, topic=topic),
                           [(PRIORITY, b"5")])
            for e in events
        ])

    def received(self, target: str) -> list[dict[str, Any]]:
        return http("GET", f"http://127.0.0.1:{self.ports[target]}/_emulator/received")

    def applied_count(self, target: str) -> int:
        return int(http("GET", f"http://127.0.0.1:{self.ports[target]}/_emulator/counters").get("applied", 0))

    def calls(self, s: Settings, target: str, events: list[dict[str, Any]]) -> list[Call]:
        """The requests the worker would make for `events`, built by the target's own rules."""
        _, transformer = binding_for(s, target)
        out = []
        for e in events:
            d = transformer.to_delivery(ChangeEvent.from_record(e))
            out.append(Call(d.resource, d.entity_id, d.op, d.idempotency_key, d.payload))
        return out

    async def bare(self, s: Settings, target: str, calls: list[Call], concurrency: int, batch_max: int) -> HttpRun:
        """Bare aiohttp against the emulator, which is reset before and after."""
        conf = s.sync_out.targets[target]
        url = f"http://127.0.0.1:{self.ports[target]}"
        http("POST", f"{url}/_emulator/reset")
        run = await bare_http(target, url, conf.api_key, calls, concurrency, batch_max)
        http("POST", f"{url}/_emulator/reset")
        return run

    async def run_workers(self, s: Settings, target: str, workers: int, until: Any, timeout: float) -> None:
        built = [build_worker(s, target) for _ in range(workers)]
        tasks = [asyncio.create_task(w.run()) for w in built]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not await asyncio.to_thread(until):
                await asyncio.sleep(0.25)
        finally:
            for w in built:
                w.stop()
            await asyncio.gather(*tasks)

    def worker_env(self, s: Settings) -> dict[str, str]:
        """The environment that gives a `syncflow sync-out run` process this scenario's settings."""
        so = s.sync_out
        env = {**os.environ, "SYNCFLOW_LOG_LEVEL": "WARNING", "SYNCFLOW_DATABASE_SCHEMA": s.database_schema,
               "SYNCFLOW_MONGO_DATABASE": s.mongo_database, "SYNCFLOW_SYNC_OUT__TOPIC_SUFFIX": so.topic_suffix,
               "SYNCFLOW_SYNC_OUT__BATCH_SIZE": str(so.batch_size), "SYNCFLOW_SYNC_OUT__BUFFER_MAX": str(so.buffer_max),
               "SYNCFLOW_SYNC_OUT__BATCHES_IN_FLIGHT": str(so.batches_in_flight),
               "SYNCFLOW_SYNC_OUT__POLL_TIMEOUT_S": str(so.poll_timeout_s)}
        for name, conf in so.targets.items():
            prefix = f"SYNCFLOW_SYNC_OUT__TARGETS__{name.upper()}__"
            env.update({prefix + "BASE_URL": conf.base_url, prefix + "RATE_PER_MINUTE": str(conf.rate_per_minute),
                        prefix + "CONCURRENCY": str(conf.concurrency), prefix + "BATCH_MAX": str(conf.batch_max),
                        prefix + "ENTITY_TYPES": json.dumps(conf.entity_types)})
        return env

    def start_worker_processes(self, s: Settings, target: str, workers: int, log: Any) -> list[tuple[subprocess.Popen[bytes], int]]:
        """`workers` sync-out processes of one group, each ready (holding its partitions)."""
        env = self.worker_env(s)
        procs = []
        for _ in range(workers):
            port = free_port()
            procs.append((subprocess.Popen([sys.executable, "-m", "syncflow", "sync-out", "run", "--target", target,
                                            "--web-port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT), port))
        deadline = time.monotonic() + 120
        for proc, port in procs:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"sync-out worker exited with {proc.returncode}; log {log.name}")
        return procs

    def sample_rss(self, procs: list[tuple[subprocess.Popen[bytes], int]], label: str) -> None:
        for i, (proc, _) in enumerate(procs, start=1):
            try:
                rss = psutil.Process(proc.pid).memory_info().rss
            except psutil.Error:
                continue
            key = f"{label}-{i}"
            self.peak_rss[key] = max(self.peak_rss.get(key, 0), rss)

    # -- scenarios ------------------------------------------------------------------------------
    async def throughput(self, target: str) -> list[list[str]]:
        """The backlog drained by each of --workers worker counts, each against the faster of
        bare HTTP before the first drain and after the last."""
        n = self.args.events
        conf = self.base.sync_out.targets[target]
        sample = [location_event(f"loc-bare-{target}-{i}", i) for i in range(n)]
        calls = self.calls(self.base, target, sample)
        before = await self.bare(self.base, target, calls, conf.concurrency, conf.batch_max)
        drains = [await self.drain(target, workers) for workers in self.args.workers]
        after = await self.bare(self.base, target, calls, conf.concurrency, conf.batch_max)
        # The faster bare run counts: on a shared machine one slow moment must not make the
        # pipeline look better than the bare calls.
        bare = max(before, after, key=lambda r: r.rate)
        self.notes[f"bare_http_records_per_s_{target}"] = {"before": round(before.rate), "after": round(after.rate),
                                                           "errors": before.errors + after.errors}
        rows = []
        for workers, (rate, delivered, note) in zip(self.args.workers, drains, strict=True):
            self.figures.append(Figure(names.sync_out_drain(target, workers), rate, "deliveries/s", Baseline(
                f"bare HTTP, same {bare.records:,} records, concurrency {conf.concurrency}", bare.rate, "records/s")))
            rows.append([f"throughput, backlog drain, {target}, {workers} worker(s)", f"{delivered}/{n} delivered",
                         f"{rate:,.0f} deliveries/s", note])
        return rows

    async def drain(self, target: str, workers: int) -> tuple[float, int, str]:
        """Worker processes drain a backlog of --events: (deliveries/s first to last delivery,
        delivered, note). Entity ids are the scenario's own: sent versions are kept per entity."""
        n = self.args.events
        s = self.scenario(f"tp-{target}-w{workers}")
        events = [location_event(f"loc-{target}-w{workers}-{i}", i) for i in range(n)]
        with open(f"/tmp/sync-out-bench-{self.token}.log", "ab") as log:
            procs = self.start_worker_processes(s, target, workers, log)
            try:
                started = time.time()
                self.produce(s, events)
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline and self.applied_count(target) < n:
                    if any(proc.poll() is not None for proc, _ in procs):
                        raise RuntimeError(f"a sync-out worker exited; log {log.name}")
                    self.sample_rss(procs, target)
                    await asyncio.sleep(0.5)
                self.sample_rss(procs, target)
            finally:
                for proc, _ in procs:
                    proc.terminate()
                for proc, _ in procs:
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        times = sorted(r["time"] for r in self.received(target))
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        rate = (len(times) - 1) / span if span else float("nan")
        note = f"first delivery {times[0] - started:.1f}s after the produce, {span:.1f}s to drain" if times else "nothing delivered"
        return rate, len(times), note

    async def latency(self, target: str) -> list[str]:
        pace, seconds = self.args.latency_rate, self.args.latency_seconds
        s = self.scenario(f"lat-{target}")
        total = int(pace * seconds)
        sample = [location_event(f"loc-rt-{target}-{i}", i) for i in range(min(300, total))]
        floor = (await self.bare(s, target, self.calls(s, target, sample), 1, 1)).latencies_s

        def feed() -> None:
            sent, t0 = 0, time.monotonic()
            while sent < total:
                due = int((time.monotonic() - t0) * pace) + 1
                chunk = [location_event(f"loc-lat-{target}-{i}", i) for i in range(sent, min(due, total))]
                if chunk:
                    self.produce(s, chunk)
                    sent += len(chunk)
                time.sleep(0.01)

        async def go() -> None:
            feeder = threading.Thread(target=feed)
            await asyncio.sleep(2.0)  # let the worker join its group first
            feeder.start()
            await asyncio.to_thread(feeder.join)

        worker = asyncio.create_task(self.run_workers(s, target, 1, lambda: self.applied_count(target) >= total, timeout=seconds + 120))
        await go()
        await worker
        rec = self.received(target)
        lat = self._latencies(s, rec, {f"loc-lat-{target}-{i}" for i in range(total)})
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
        self.figures.append(Figure(f"latency p50, {target}, steady {pace:g}/s, change event → applied", p50, "ms",
                                   Baseline("bare HTTP round trip p50", median(floor) * 1000, "ms")))
        self.figures.append(Figure(f"latency p99, {target}, steady {pace:g}/s, change event → applied", p99, "ms",
                                   Baseline("bare HTTP round trip p99", percentile(floor, 99) * 1000, "ms")))
        return [f"latency, steady {pace:g}/s for {seconds:g}s, {target}", f"{len(rec)}/{total} delivered",
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms", "change event produced → applied at the target"]

    def _latencies(self, s: Settings, received: list[dict[str, Any]], ids: set[str]) -> list[float]:
        """Applied time minus the event's occurred_at, read back from the changes topic."""
        from confluent_kafka import Consumer

        codec = codec_for(s)
        topic = changes_topic("location") + s.sync_out.topic_suffix
        c = Consumer(kafka_client_config(s, **{"group.id": f"bench-read-{uuid.uuid4().hex}",
                                              "auto.offset.reset": "earliest", "enable.auto.commit": False}))
        c.subscribe([topic])
        occurred: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(occurred) < len(ids) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    rec = codec.decode(m.value(), topic=topic).record
                    at = rec["occurred_at"]
                    occurred[rec["entity_id"]] = at.timestamp() if hasattr(at, "timestamp") else at / 1000
        c.close()
        return sorted(r["time"] - occurred[r["external_id"]] for r in received if r["external_id"] in occurred)

    async def rate_limited(self, target: str) -> list[str]:
        per_min, seconds = self.args.rate_per_minute, self.args.seconds
        s = self.scenario(f"rl-{target}", rate_per_minute=per_min, rate_burst_s=0.25)
        n = int(per_min / 60 * seconds * 1.5) + 50
        self.produce(s, [location_event(f"loc-rl-{target}-{i}", i) for i in range(n)])
        await self.run_workers(s, target, 2, lambda: False, timeout=seconds + 5)
        times = sorted(r["time"] for r in self.received(target))
        window = [t for t in times if t - times[0] <= seconds]
        span = window[-1] - window[0]
        rate = (len(window) - 1) / span * 60 if span else float("nan")
        self.figures.append(Figure(f"rate limit, {target}, 2 workers, {seconds:g} s", rate, "requests/min",
                                   Baseline("configured limit", per_min, "requests/min")))
        return [f"rate limit, 2 workers, {target}", f"{len(window)} delivered in {span:.1f}s",
                f"{rate:,.1f}/min against a limit of {per_min:g}/min ({(rate / per_min - 1) * 100:+.1f}%)",
                "measured at the target, first to last delivery"]


async def main(args: argparse.Namespace) -> None:
    base = Settings.load()
    rows: list[list[str]] = []
    with Bench(base, args) as bench:
        for target in args.targets:
            rows += await bench.throughput(target)
            rows.append(await bench.latency(target))
        if args.seconds > 0:
            rows.append(await bench.rate_limited(args.targets[0]))
        figures = bench.figures
    if bench.peak_rss:
        figures.append(Figure(names.SYNC_OUT_LARGEST_RSS, max(bench.peak_rss.values()) / 2**20, "MiB"))
        figures += [Figure(f"{names.WORKER_RSS_PREFIX}{name}", rss / 2**20, "MiB") for name, rss in sorted(bench.peak_rss.items())]
    print()
    print("| scenario | volume | result | note |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    params = {**{k: v for k, v in vars(args).items() if k != "json"}, **bench.notes}
    result = BenchResult("sync-out", params, figures)
    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20000, help="backlog size of the throughput run")
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="worker processes of each backlog drain, one drain per count")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the rate-limit run (0 skips it)")
    p.add_argument("--rate-per-minute", type=float, default=1200.0, help="the limit of the rate-limit run")
    p.add_argument("--latency-rate", type=float, default=200.0, help="events/s during the latency run")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=500, help="records per sync-out batch")
    p.add_argument("--batches-in-flight", type=int, default=1, help="batches a worker processes at once")
    p.add_argument("--concurrency", type=int, default=32, help="target client concurrency")
    p.add_argument("--targets", nargs="+", default=["one", "lessen360"])
    p.add_argument("--json", help="write the figures here (bench/figures.py format)")
    asyncio.run(main(p.parse_args()))
