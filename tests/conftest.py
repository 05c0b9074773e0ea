"""Fixtures shared by every test. Integration fixtures take the services from the settings
(env vars / the local stack's stack.env); each test gets its own topics, group ids,
PostgreSQL schema and MongoDB database, and they are removed afterwards."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

from syncflow.settings import Settings

HOW_TO_START = (
    "The local stack is not reachable. Start it with `deploy/local/stack.sh up` "
    "(or run the whole suite with `make test`, which starts it), or point SYNCFLOW_* "
    "settings at running services."
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _docker_engine_answers() -> bool:
    return os.path.exists("/var/run/docker.sock") and _reachable_unix("/var/run/docker.sock")


def _reachable_unix(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(path)
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Settings]:
    """The real services: Kafka, PostgreSQL and a MongoDB wire-protocol server.

    Where the configured services do not answer and a Docker engine does, they are started
    with testcontainers; otherwise the test fails saying how to start the local stack."""
    kafka_host, kafka_port = base_settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    pg = urlparse(base_settings.database_url)
    mongo = urlparse(base_settings.mongo_url)
    endpoints = [
        (kafka_host, int(kafka_port)),
        (pg.hostname or "127.0.0.1", pg.port or 5432),
        (mongo.hostname or "127.0.0.1", mongo.port or 27017),
    ]
    if all(_reachable(h, p) for h, p in endpoints):
        yield base_settings
        return
    if _docker_engine_answers():
        yield from _containers(base_settings)
        return
    pytest.fail(HOW_TO_START, pytrace=False)


def _containers(base: Settings) -> Iterator[Settings]:  # pragma: no cover - needs Docker
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.postgres import PostgresContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka, PostgresContainer(
        "postgres:15", driver="psycopg2"
    ) as pg, MongoDbContainer("mongo:7") as mongo:
        yield base.model_copy(
            update={
                "kafka_bootstrap_servers": kafka.get_bootstrap_server(),
                "database_url": pg.get_connection_url(),
                "mongo_url": mongo.get_connection_url(),
            }
        )


@pytest.fixture
def unique() -> Callable[[str], str]:
    """unique("name") -> "name-<8 hex>": topic names, group ids, schemas, databases."""
    token = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{token}"
