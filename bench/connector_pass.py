"""Connector pass benchmark: how long one pass over a source takes with 1, 2, 4, ... streams
read at once (`SourceSettings.streams_in_flight`). A change waits about that long (plus the
poll interval) before a connector reads it, so this is the poll path's floor.

    .venv/bin/python bench/connector_pass.py [--source yardi] [--volume 6200] [--in-flight 1 2 4 8]

The source emulators run in a process of their own (`syncflow run source-emulators`, free ports);
the connector runs here against real Kafka (a raw topic of its own) and PostgreSQL (cursors in
a schema of its own, fresh for each setting). Per setting: the first pass (every record is
new) and an idle pass right after (nothing changed: each stream is asked again and its
re-read window compared), seconds and streams. Prints Markdown."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from syncflow.roles.connector import run_connector  # noqa: E402
from syncflow.settings import Settings  # noqa: E402
from syncflow.sinks.common_db.migrate import migrate  # noqa: E402
from syncflow.streams.admin import create_topics, delete_topics  # noqa: E402
from syncflow.streams.topics import SOURCES, TopicSpec  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_env(ports: dict[str, int]) -> dict[str, str]:
    return {f"SYNCFLOW_CONNECTORS__SOURCES__{s.upper()}__BASE_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()}


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"emulator on port {port} did not start in {timeout:.0f} s")


async def one_setting(base: Settings, source: str, in_flight: int, url: str, topic: str, dlq: str) -> tuple[float, float, int]:
    """(first pass s, idle pass s, records published) with a fresh cursor schema."""
    schema = f"connbench_{uuid.uuid4().hex[:8]}"
    src = base.connectors.sources[source].model_copy(update={"base_url": url, "topic": topic,
                                                               "streams_in_flight": in_flight})
    settings = base.model_copy(update={"database_schema": schema, "connectors": base.connectors.model_copy(update={
        "dlq_topic": dlq, "sources": {**base.connectors.sources, source: src}})})
    migrate(settings)
    try:
        started = time.perf_counter()
        first = await run_connector(settings, source, once=True)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        await run_connector(settings, source, once=True)
        idle_s = time.perf_counter() - started
        return first_s, idle_s, first.records_published
    finally:
        engine = create_engine(base.database_url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="yardi", choices=SOURCES)
    parser.add_argument("--volume", type=int, default=6200, help="units in the emulated world")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()

    base = Settings.load()
    ports = {source: free_port() for source in SOURCES}
    token = uuid.uuid4().hex[:8]
    topic, dlq = f"raw.{args.source}.connbench-{token}", f"sync-in.dlq.connbench-{token}"
    create_topics(base, [TopicSpec(topic, 4, 3600_000), TopicSpec(dlq, 1, 3600_000)])
    log = open(f"/tmp/connector-pass-{token}.log", "w")
    emulators = subprocess.Popen([sys.executable, "-m", "syncflow", "run", "source-emulators", "--volume", str(args.volume)],
                                 env={**os.environ, **emulator_env(ports), "PYTHONPATH": str(REPO)},
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(ports[args.source], 300)
        url = f"http://127.0.0.1:{ports[args.source]}"
        rows = []
        for n in args.in_flight:
            first_s, idle_s, published = asyncio.run(one_setting(base, args.source, n, url, topic, dlq))
            print(f"streams_in_flight {n}: first pass {first_s:.1f} s ({published:,} records), idle pass {idle_s:.1f} s",
                  file=sys.stderr, flush=True)
            rows.append((n, first_s, idle_s, published))
        one = {n: (f, i) for n, f, i, _ in rows}.get(1)
        print(f"\n{args.source}, {args.volume:,} units (emulators in their own process)\n")
        print("| streams in flight | first pass | records | idle pass | idle pass vs 1 |")
        print("|---|---|---|---|---|")
        for n, first_s, idle_s, published in rows:
            ratio = f"{idle_s / one[1]:.2f}×" if one else "–"
            print(f"| {n} | {first_s:.1f} s | {published:,} | {idle_s:.1f} s | {ratio} |")
    finally:
        emulators.terminate()
        emulators.wait(30)
        log.close()
        delete_topics(base, [topic, dlq])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
