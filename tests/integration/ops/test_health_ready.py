"""`/ready` follows a real PostgreSQL going down and coming back, and the real Kafka and
MongoDB checks answer. The database stopped here is a throwaway instance of this test, never
the shared one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from sqlalchemy import create_engine

from syncflow.streams.health import HealthCheck, kafka_reachable, mongo_reachable, postgres_reachable
from syncflow.streams.metrics import add_ops_routes, create_metrics
from syncflow.settings import OpsSettings, Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temp directory, owned by the postgres user."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="syncflow-ready-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = _free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.fail("this test needs root and /usr/lib/postgresql/15/bin to run its own PostgreSQL")
    pg = ThrowawayPostgres()
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(pg.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(pg.dir, ignore_errors=True)


async def test_ready_turns_503_while_postgres_is_down_and_200_when_back(throwaway_postgres: ThrowawayPostgres) -> None:
    engine = create_engine(throwaway_postgres.url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    health = HealthCheck(OpsSettings(health_cache_s=0, check_timeout_s=3))
    health.add("postgres", postgres_reachable(engine))
    app = web.Application()
    add_ops_routes(app, health, create_metrics(CollectorRegistry()).registry)
    try:
        async with TestClient(TestServer(app)) as client:
            up = await client.get("/ready")
            assert up.status == 200, await up.text()
            throwaway_postgres.stop()
            down = await client.get("/ready")
            assert down.status == 503
            [check] = (await down.json())["checks"]
            assert check["name"] == "postgres" and check["ok"] is False and check["detail"]
            assert (await client.get("/health")).status == 200  # the process is alive: no restart
            throwaway_postgres.start()
            back = await client.get("/ready")
            assert back.status == 200, await back.text()
    finally:
        engine.dispose()


async def test_kafka_and_mongo_checks_on_the_real_services(stack: Settings) -> None:
    client = MongoClient(stack.mongo_url, serverSelectionTimeoutMS=2000)
    health = HealthCheck(OpsSettings(health_cache_s=0))
    health.add("kafka", kafka_reachable(stack))
    health.add("mongo", mongo_reachable(client))
    try:
        report = await health.readiness()
        assert report.ok, report.to_dict()
        assert {c.name for c in report.checks} == {"kafka", "mongo"}
    finally:
        client.close()
    unreachable = HealthCheck(OpsSettings(health_cache_s=0, check_timeout_s=2))
    dead = MongoClient(f"mongodb://127.0.0.1:{_free_port()}/", serverSelectionTimeoutMS=500)
    unreachable.add("mongo", mongo_reachable(dead))
    assert not (await unreachable.readiness()).ok
    dead.close()
