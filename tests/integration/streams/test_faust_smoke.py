"""Faust is real: a worker subprocess with a fresh app id consumes Avro change events from a
real topic and produces to another; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from syncflow.streams.avro import SingleObjectCodec
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.schemas import SchemaCatalogue
from syncflow.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("faust_smoke_app.py")
CHANGE_EVENT = "io.syncflow.canonical.ChangeEvent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(i: int) -> dict:
    return {
        "event_id": f"loc-{i}:1", "entity_type": "location", "entity_id": f"loc-{i}", "version": 1,
        "change_type": "create", "origin_source": "yardi", "origin_source_id": str(i), "priority": 5,
        "changed_fields": ["name"], "snapshot": "{}", "references": {},
        "occurred_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "trace_id": f"t{i}",
    }


def test_faust_worker_consumes_and_produces(stack: Settings, topics, tmp_path: Path) -> None:
    source, sink = topics.create("smoke-faust-in"), topics.create("smoke-faust-out")
    app_id = f"smoke-faust-{uuid.uuid4().hex[:8]}"
    topics.claim_prefix(app_id)  # Faust's own leader topic
    env = {k: v for k, v in os.environ.items() if k != "SYNCFLOW_SCHEMA_REGISTRY_URL"}
    env.update(
        SMOKE_APP_ID=app_id, SMOKE_IN=source, SMOKE_OUT=sink, SMOKE_DATADIR=str(tmp_path / "faust"),
        SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap_servers,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    log = (tmp_path / "worker.log").open("w+")
    worker = subprocess.Popen(
        [sys.executable, str(APP), "worker", "--web-port", str(free_port()), "--web-host", "127.0.0.1", "-l", "warn"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        codec = SingleObjectCodec(SchemaCatalogue.load(stack.schemas_dir))
        sent = {f"loc-{i}".encode(): event(i) for i in range(5)}
        ReliableProducer(stack).send_all(
            OutgoingRecord(source, key, codec.encode(CHANGE_EVENT, value)) for key, value in sent.items()
        )
        received = consume(stack, sink, len(sent), timeout=90, alive=lambda: worker.poll() is None)
        assert worker.poll() is None, "worker exited early:\n" + tail(log)
        relayed = {key: codec.decode(value) for key, value in received}
        assert set(relayed) == set(sent)
        for key, decoded in relayed.items():
            assert decoded.schema_name == CHANGE_EVENT
            assert decoded.record == {**sent[key], "priority": 1, "trace_id": f"relayed:{sent[key]['trace_id']}"}

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, tail(log)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        output = tail(log, 100_000)
        log.close()
    assert "Traceback" not in output, output[-3000:]


def tail(log, size: int = 3000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-size:]


def consume(stack: Settings, topic: str, count: int, timeout: float, alive: Callable[[], bool]) -> list[tuple[bytes, bytes]]:
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap_servers, "group.id": f"smoke-reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline and alive():
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return out
