"""A batch given up leaves the batch behind it unacknowledged too (docs/sync-in.md, step 6).

A sync-in worker (a real subprocess on the real stack) writes its raw documents through a
TCP proxy to the raw store. With the proxy cut, batch A's versions are committed and its
raw write keeps failing while batch B (same partition, behind A) is taken and its versions
committed. The worker is then stopped: A is let go, and B must be let go with it, because
Faust commits the first unbroken run of acked offsets: acking B past A would commit A's
offset and A's raw document would never be written. The proxy opens the moment A is let go,
so a worker that went on with B would succeed in writing it, ack it and commit past A (with
the raw store still cut, B's own raw write would fail and hide that). A second worker in the
same group must then find both records, write both raw documents and add no version."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine, text

from syncflow.agents.rules import RulesEngine
from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity
from syncflow.model import RawKey
from syncflow.settings import Settings
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.raw_store import COMPLETED, RawRecordStore
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.topics import SOURCES, raw_key, raw_topic
from tests.integration.agents.test_poison import (  # noqa: F401 - world is a fixture
    Worker,
    lag,
    start_worker,
    valid_pool,
    wait_for,
    world,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 120.0  # the machine is shared and loaded: conditions, not sleeps, with room to spare


def shut(sock: socket.socket) -> None:
    """Shut both directions of a socket that may already be closed."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class CuttableProxy:
    """Forwards TCP connections from a free 127.0.0.1 port to one host:port. `cut()` closes
    every open connection and closes new ones as soon as they are accepted; `open()` lets
    connections through again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._is_open = True
        self._conns: set[socket.socket] = set()
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                upstream = socket.create_connection(self.target, timeout=5) if self._is_open else None
            except OSError:
                upstream = None
            with self._lock:
                if upstream is None or not self._is_open:
                    _hang_up(client, upstream)
                    continue
                upstream.settimeout(None)
                self._conns |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    t = threading.Thread(target=self._pipe, args=(src, dst), name="proxy-pipe", daemon=True)
                    self._threads.append(t)
                    t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:  # shut both ends (wakes the other direction's thread); each thread closes its source
            with self._lock:
                self._conns -= {src, dst}
            for s in (src, dst):
                shut(s)
            src.close()

    def cut(self) -> None:
        with self._lock:
            self._is_open = False
            conns, self._conns = list(self._conns), set()
        for s in conns:
            shut(s)  # the pipe threads see it and close their sockets

    def open(self) -> None:
        with self._lock:
            self._is_open = True

    def close(self) -> None:
        self.cut()
        shut(self._listener)  # wakes the blocked accept()
        self._listener.close()
        for t in self._threads:
            t.join(10)


def _hang_up(*socks: socket.socket | None) -> None:
    for s in socks:
        if s is not None:
            s.close()


def proxied_url(mongo_url: str, port: int) -> str:
    """The same MongoDB URL (credentials, database, query parameters such as TLS options)
    with its one host replaced by the proxy's address."""
    parts = urlsplit(mongo_url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"))


@pytest.fixture
def mongo_proxy(settings: Settings) -> Iterator[CuttableProxy]:
    parts = urlsplit(settings.mongo_url)
    if parts.scheme != "mongodb" or "," in parts.netloc:
        pytest.skip("the proxy stands in for one mongodb:// host; the raw store's URL names several (or SRV)")
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 27017))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers started by the test; any still running at the end is stopped."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop(timeout=60)


def log_text(worker: Worker) -> str:
    worker.log.flush()
    worker.log.seek(0)
    return worker.log.read()


def let_go_of_a(worker: Worker, timeout: float) -> None:
    """Wait (polling often: the worker may exit right after) for the stopping worker to log
    that it leaves its failing batch unacknowledged."""
    deadline = time.monotonic() + timeout
    while "leaves a failing batch" not in log_text(worker):
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the worker never let its failing batch go:\n{log_text(worker)[-4000:]}")
        time.sleep(0.05)


def versions(engine: Engine, entity: tuple[str, str]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM data_versions WHERE entity_type = :t AND entity_id = :i"),
                                {"t": entity[0], "i": entity[1]}).scalar_one())


def two_entities(settings: Settings) -> list[tuple[Entity, tuple[str, str]]]:
    """Two valid records of different canonical entities, each with its (entity_type, entity_id)."""
    rules = RulesEngine.from_file(settings.sync_in.rules_file)
    out: list[tuple[Entity, tuple[str, str]]] = []
    for e in valid_pool():
        canonical = rules.transform("yardi", e.entity_type, render(e))
        if all(c != (canonical.entity_type, canonical.entity_id) for _, c in out):
            out.append((e, (canonical.entity_type, canonical.entity_id)))
        if len(out) == 2:
            return out
    raise AssertionError("the emulated world has fewer than two valid entities")


def test_a_batch_let_go_takes_the_batch_behind_it_along(
    world: tuple[Settings, str, Path],
    unique: Callable[[str], str],
    mongo_proxy: CuttableProxy,
    workers: list[Worker],
) -> None:
    settings, suffix, tmp = world
    topic = raw_topic("yardi") + suffix
    raw_topics = [raw_topic(s) + suffix for s in SOURCES]
    codec = codec_for(settings)
    producer = ReliableProducer(settings)
    engine = make_engine(settings)
    raw_store = RawRecordStore(settings)  # the real server, not through the proxy
    (a, a_id), (b, b_id) = two_entities(settings)

    def produce(entity: Entity) -> None:
        producer.send_all([OutgoingRecord(
            topic, raw_key(entity.entity_type, entity.source_id).encode(),
            codec.encode(schema_name("yardi", entity.entity_type), render(entity), topic=topic), [], partition=0)])

    group = unique("sync-in-let-go")
    through_proxy = proxied_url(settings.mongo_url, mongo_proxy.port)
    try:
        first = start_worker(settings, suffix, group, tmp, SYNCFLOW_MONGO_URL=through_proxy)
        workers.append(first)
        wait_for(first.ready, TIMEOUT, "the first worker to be ready", first)

        mongo_proxy.cut()
        produce(a)
        proxy_address = f"127.0.0.1:{mongo_proxy.port}"
        wait_for(lambda: any("retrying in" in line and proxy_address in line for line in log_text(first).splitlines()),
                 TIMEOUT, "A's raw-store write to fail and be retried", first)
        wait_for(lambda: versions(engine, a_id) == 1, TIMEOUT, "A's version to be committed", first)
        produce(b)  # batch B: its versions are committed while A's raw write still fails
        wait_for(lambda: versions(engine, b_id) == 1, TIMEOUT, "B's version to be committed", first)

        first.proc.send_signal(signal.SIGTERM)
        # the raw store comes back the moment A is let go: a worker that went on with B would
        # now write B's raw documents, ack B and commit past A
        let_go_of_a(first, TIMEOUT)
        mongo_proxy.open()
        try:
            first.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the first worker did not stop within 60 s of SIGTERM:\n{log_text(first)[-4000:]}")
        assert lag(settings, group, raw_topics) == 2, "A and B must both be left unacknowledged"

        second = start_worker(settings, suffix, group, tmp, SYNCFLOW_MONGO_URL=through_proxy)
        workers.append(second)
        wait_for(lambda: lag(settings, group, raw_topics) == 0, TIMEOUT, "the second worker to redo A and B", second)
        for entity, canonical in ((a, a_id), (b, b_id)):
            doc = raw_store.find_one(RawKey("yardi", entity.entity_type, entity.source_id))
            assert doc is not None, f"no raw document for {canonical}"
            assert doc["syncStatus"]["inbound"] == COMPLETED, f"{canonical}: {doc['syncStatus']}"
            assert versions(engine, canonical) == 1, f"{canonical}: the redo made another version"
    finally:
        raw_store.close()
        engine.dispose()
