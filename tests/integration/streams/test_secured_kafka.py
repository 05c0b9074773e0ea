"""Every role through Kafka's SASL_SSL listener (SCRAM-SHA-512, TLS with the local stack's
CA, host name checked) and nothing else: the secured listener's address, CA, user and
password file come from the local stack's stack.env (SYNCFLOW_LOCAL_KAFKA_SASL_SSL_*), or the
environment; every client of the test is built from `settings.kafka_security`.

A sync-in worker subprocess (Faust/aiokafka, its password given as a file through
SYNCFLOW_KAFKA_SECURITY__PASSWORD_FILE), the ingest API and a RawPublisher (confluent-kafka
producers), a sync-out worker (confluent-kafka consumer) and `syncflow status` (admin client)
move records from the ingest API and a publisher to the ONE target emulator; the secret shows
in none of the worker's log, /health, /ready, /metrics, the DLQ headers and the status
output. A client without credentials, and one with a wrong password, are refused there."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from typer.testing import CliRunner

from syncflow.agents.rules import RulesEngine
from syncflow.streams.topics import (
    ENTITY_TYPES,
    SOURCES,
    SYNC_IN_DLQ,
    TopicSpec,
    changes_topic,
    raw_topic,
    sync_out_topics,
)
from syncflow.roles.sync_out import add_observability, build_worker
from syncflow.roles.ingest import make_ingest_app
from syncflow.connectors.publish import RawPublisher, new_batch_number
from syncflow.emulators.sources import generate_world
from syncflow.emulators.sources.render import render
from syncflow.emulators.targets import emulator_state, emulator_url, start_target_emulator
from syncflow.errors import ValidationError
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import create_metrics
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import KafkaSecuritySettings
from syncflow.streams.security import kafka_client_config
from syncflow.settings import REPO_ROOT, Settings, get_settings, local_stack_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "SYNCFLOW_LOCAL_KAFKA_SASL_SSL_"
NAMES = ("BOOTSTRAP", "MECHANISM", "CA_FILE", "USERNAME", "PASSWORD_FILE")


def secured_listener() -> dict[str, str]:
    """The secured listener from the environment, else the local stack's stack.env."""
    found = {n: os.environ[PREFIX + n] for n in NAMES if os.environ.get(PREFIX + n)}
    stack_env = local_stack_dir() / "stack.env"
    if len(found) < len(NAMES) and stack_env.exists():
        for line in stack_env.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.startswith(PREFIX) and name[len(PREFIX):] in NAMES:
                found.setdefault(name[len(PREFIX):], value.strip())
    missing = [PREFIX + n for n in NAMES if n not in found]
    if missing:
        pytest.fail(f"no SASL_SSL Kafka listener configured ({', '.join(missing)} unset): start or restart the "
                    "local stack's Kafka with `deploy/local/stack.sh up` (it adds the listener)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def listener() -> dict[str, str]:
    return secured_listener()


@pytest.fixture(scope="module")
def password(listener: dict[str, str]) -> str:
    return Path(listener["PASSWORD_FILE"]).read_text().strip()


def secured(settings: Settings, listener: dict[str, str], password: str) -> Settings:
    """`settings` with Kafka only through the secured listener (the password given inline)."""
    security = KafkaSecuritySettings(protocol="SASL_SSL", sasl_mechanism=listener["MECHANISM"],  # type: ignore[arg-type]
                                     username=listener["USERNAME"], password=SecretStr(password),
                                     ca_file=Path(listener["CA_FILE"]))
    return settings.model_copy(update={"kafka_bootstrap_servers": listener["BOOTSTRAP"], "kafka_security": security})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(log: IO[str], size: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-size:]


def refusal(config: dict[str, Any], seconds: float = 15.0) -> list[KafkaError]:
    """The errors a consumer with `config` meets trying to reach the brokers (none when it can)."""
    errors: list[KafkaError] = []
    consumer = Consumer({**config, "group.id": "refused", "log_level": 0, "error_cb": errors.append})
    try:
        consumer.list_topics(timeout=5)
        return []
    except KafkaException as exc:
        errors.append(exc.args[0])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(e.code() in (KafkaError._AUTHENTICATION, KafkaError._ALL_BROKERS_DOWN)
                                                  for e in errors):
        consumer.poll(0.2)
    consumer.close()
    return errors


def test_clients_without_credentials_or_with_a_wrong_password_are_refused(
        stack: Settings, listener: dict[str, str], password: str) -> None:
    good = secured(stack, listener, password)
    assert AdminClient(kafka_client_config(good)).list_topics(timeout=10).brokers  # the listener answers

    plaintext = {"bootstrap.servers": listener["BOOTSTRAP"]}
    assert refusal(plaintext), "a plaintext client got metadata from the SASL_SSL listener"
    tls_only = {**plaintext, "security.protocol": "SSL", "ssl.ca.location": listener["CA_FILE"]}
    assert refusal(tls_only), "a TLS client without SASL credentials got metadata"

    wrong = secured(stack, listener, password + "-wrong")
    errors = refusal(kafka_client_config(wrong))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [e.str() for e in errors]
    assert all(password not in e.str() for e in errors)


def test_wrong_password_is_refused_to_the_faust_client_too(stack: Settings, listener: dict[str, str], password: str) -> None:
    """aiokafka (what sync-in's Faust app runs on) with the same settings and a wrong password."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOKafkaError

    from syncflow.streams.security import faust_credentials

    async def connect(settings: Settings) -> None:
        creds = faust_credentials(settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, security_protocol="SASL_SSL",
            sasl_mechanism=creds.mechanism.value, sasl_plain_username=creds.username,  # type: ignore[union-attr]
            sasl_plain_password=creds.password, ssl_context=creds.ssl_context, request_timeout_ms=10000)  # type: ignore[union-attr]
        try:
            await producer.start()
        finally:
            await producer.stop()

    asyncio.run(connect(secured(stack, listener, password)))
    with pytest.raises(AIOKafkaError):
        asyncio.run(connect(secured(stack, listener, password + "-wrong")))


# -- the pipeline through the secured listener ----------------------------------------------
@pytest.fixture
def pipeline_settings(settings: Settings, listener: dict[str, str], password: str,
                      unique: Callable[[str], str]) -> Iterator[Settings]:
    """Per-test topics (one suffix for sync-in and sync-out), made and removed through the
    secured listener."""
    sfx = unique("-sec")
    base = secured(settings, listener, password)
    sources = {s: src.model_copy(update={"topic": raw_topic(s) + sfx}) for s, src in base.connectors.sources.items()}
    sync_out = base.sync_out.model_copy(update={
        "topic_suffix": sfx, "retry_delays_s": [0.5, 1.0, 1.5], "dependency_retry_delay_s": 0.5, "poll_timeout_s": 0.1,
        "session_timeout_ms": 6000})
    s = base.model_copy(update={
        "sync_in": base.sync_in.model_copy(update={"topic_suffix": sfx, "group_id": unique("sync-in-sec")}),
        "sync_out": sync_out,
        "connectors": base.connectors.model_copy(update={"sources": sources, "dlq_topic": SYNC_IN_DLQ + sfx}),
    })
    one = sync_out_topics(s, "one")
    names = ([raw_topic(src) + sfx for src in SOURCES] + [changes_topic(e) + sfx for e in ENTITY_TYPES]
             + [SYNC_IN_DLQ + sfx] + one.retries + [one.dlq])
    create_topics(s, [TopicSpec(n, 2, 3600_000) for n in names])
    migrate(s)
    try:
        yield s
    finally:
        delete_topics(s, names)


def start_sync_in(settings: Settings, listener: dict[str, str], tmp: Path, web_port: int) -> tuple[subprocess.Popen, IO[str]]:
    """`python -m syncflow.cli.sync_in run`, its Kafka security from SYNCFLOW_KAFKA_SECURITY__*
    environment variables, the password as a file (how a Kubernetes Secret is mounted)."""
    env = dict(os.environ)
    env.update(
        SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS=listener["BOOTSTRAP"],
        SYNCFLOW_KAFKA_SECURITY__PROTOCOL="SASL_SSL",
        SYNCFLOW_KAFKA_SECURITY__SASL_MECHANISM=listener["MECHANISM"],
        SYNCFLOW_KAFKA_SECURITY__USERNAME=listener["USERNAME"],
        SYNCFLOW_KAFKA_SECURITY__PASSWORD_FILE=listener["PASSWORD_FILE"],
        SYNCFLOW_KAFKA_SECURITY__CA_FILE=listener["CA_FILE"],
        SYNCFLOW_DATABASE_URL=settings.database_url,
        SYNCFLOW_DATABASE_SCHEMA=settings.database_schema,
        SYNCFLOW_MONGO_URL=settings.mongo_url,
        SYNCFLOW_MONGO_DATABASE=settings.mongo_database,
        SYNCFLOW_SYNC_IN__BATCH_SIZE="50",
        SYNCFLOW_SYNC_IN__OUTBOX_SWEEP_INTERVAL_S="1.0",
        SYNCFLOW_SYNC_IN__SESSION_TIMEOUT_S="6",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    env.pop("SYNCFLOW_KAFKA_SECURITY__PASSWORD", None)
    log = (tmp / "sync-in.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncflow.cli.sync_in", "run", "--web-port", str(web_port),
         "--group-id", settings.sync_in.group_id, "--topic-suffix", settings.sync_in.topic_suffix, "--loglevel", "info"],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return proc, log


@pytest.fixture
async def one_emulator() -> AsyncIterator[Any]:
    runner = await start_target_emulator("one")
    yield runner
    await runner.cleanup()


def distinct_locations(n: int) -> list[tuple[str, dict[str, Any]]]:
    """n valid location records of different sources that are n different canonical locations,
    and one invalid one (sync-in dead-letters it)."""
    world = generate_world(seed=5, volume=16, invalid_rate=0.3)
    rules = RulesEngine.from_file(REPO_ROOT / "syncflow" / "agents" / "rules" / "sync_in.yaml")
    picked: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for source in ("realpage", "yardi"):
        for e in world.of(source, "location"):
            record = render(e)
            try:
                entity_id = rules.transform(source, "location", record).entity_id
            except ValidationError:
                continue
            if entity_id not in seen:
                seen.add(entity_id)
                picked.append((source, record))
                break
    assert len(picked) == n
    invalid = next(e for e in world.of("yardi", "location") if e.invalid)
    return picked + [("yardi-invalid", render(invalid))]


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float, proc: subprocess.Popen, log: IO[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sync-in worker exited with {proc.returncode}:\n{tail(log)}")
        if predicate():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; sync-in log:\n{tail(log)}")


def read_all(settings: Settings, topic: str, timeout: float = 20.0) -> list[Any]:
    consumer = Consumer(kafka_client_config(settings, **{"group.id": f"reader-{time.time()}", "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        want = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_records_flow_end_to_end_through_the_secured_listener_only(
        pipeline_settings: Settings, listener: dict[str, str], password: str, one_emulator: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = pipeline_settings
    so = s.sync_out.model_copy(update={"targets": {**s.sync_out.targets, "one": s.sync_out.targets["one"].model_copy(
        update={"base_url": emulator_url(one_emulator), "rate_per_minute": 6000.0})}})
    s = s.model_copy(update={"sync_out": so})
    (ingested_source, ingested), (published_source, published), (_, invalid) = distinct_locations(2)
    assert ingested_source == "realpage" and published_source == "yardi"

    web_port, out_port = free_port(), free_port()
    proc, log = start_sync_in(s, listener, tmp_path, web_port)
    # the sync-out worker as `syncflow run sync-out` wires it, with its /health, /ready, /metrics
    registry, health = CollectorRegistry(), HealthCheck(s.ops)
    worker = build_worker(s, "one", metrics=create_metrics(registry), health=health)
    add_observability(s, worker, registry, health)
    web_runner = web.AppRunner(worker.web_app, access_log=None, handle_signals=False)
    await web_runner.setup()
    await web.TCPSite(web_runner, "127.0.0.1", out_port).start()
    task = asyncio.create_task(worker.run())
    server = TestServer(make_ingest_app(s), host="127.0.0.1")
    await server.start_server()
    try:
        # the ingest API: its producer goes through the secured listener
        url = str(server.make_url(f"/ingest/{ingested_source}/location"))
        async with aiohttp.ClientSession() as session, session.post(
                url, json=[ingested], headers={"X-API-Key": s.ingest.api_keys[ingested_source]}) as resp:
            assert resp.status == 202, await resp.text()
        # a connector's publisher: one valid record, one that sync-in dead-letters
        producer = ReliableProducer(s)
        result = await asyncio.to_thread(RawPublisher(s, published_source, producer).publish,
                                         "location", [published, invalid], new_batch_number())
        producer.close()
        assert len(result.keys) + result.rejected == 2

        state = emulator_state(one_emulator)
        await wait_for(lambda: len({a.external_id for a in state.received if a.entity_type == "locations"}) >= 2,
                       "both locations at the ONE target", 120, proc, log)
        assert worker.stats["delivered"] == 2 and not worker.stats["dead-lettered"], worker.stats
        await wait_for(lambda: len(read_all(s, SYNC_IN_DLQ + s.sync_in.topic_suffix, 5)) >= 1,
                       "the invalid record in sync-in.dlq", 60, proc, log)

        # the secret is nowhere an operator or a scraper looks
        dead = read_all(s, SYNC_IN_DLQ + s.sync_in.topic_suffix)
        assert dead and all(password.encode() not in (v or b"") for m in dead for _, v in (m.headers() or []))
        for role, port in (("sync-in", web_port), ("sync-out", out_port)):
            pages = {p: await asyncio.to_thread(get, f"http://127.0.0.1:{port}/{p}") for p in ("health", "ready", "metrics")}
            assert pages["health"][0] == 200, (role, pages["health"])
            assert pages["metrics"][0] == 200 and "syncflow_" in pages["metrics"][1], role
            for page, (_, body) in pages.items():
                assert password not in body, (role, page)
        assert password not in repr(s) and password not in str(s) and password not in s.model_dump_json()

        # `syncflow status` reads lag and DLQ depth through the secured listener
        from syncflow.cli import status

        for name, value in {
            "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": listener["BOOTSTRAP"], "SYNCFLOW_KAFKA_SECURITY__PROTOCOL": "SASL_SSL",
            "SYNCFLOW_KAFKA_SECURITY__SASL_MECHANISM": listener["MECHANISM"],
            "SYNCFLOW_KAFKA_SECURITY__USERNAME": listener["USERNAME"],
            "SYNCFLOW_KAFKA_SECURITY__PASSWORD_FILE": listener["PASSWORD_FILE"],
            "SYNCFLOW_KAFKA_SECURITY__CA_FILE": listener["CA_FILE"],
            "SYNCFLOW_DATABASE_URL": s.database_url, "SYNCFLOW_DATABASE_SCHEMA": s.database_schema,
            "SYNCFLOW_SYNC_IN__GROUP_ID": s.sync_in.group_id,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            result_json = await asyncio.to_thread(CliRunner().invoke, status.app, ["--json"])
            result_human = await asyncio.to_thread(CliRunner().invoke, status.app, [])
        finally:
            get_settings.cache_clear()
        assert result_json.exit_code == 0, result_json.output
        assert '"lag"' in result_json.output
        assert password not in result_json.output and password not in result_human.output
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await web_runner.cleanup()
        await server.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert password not in tail(log, 10_000_000)
