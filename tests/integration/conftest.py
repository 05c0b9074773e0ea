"""Per-test resources on the real stack: topics, a PostgreSQL schema, a MongoDB database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pymongo import MongoClient
from sqlalchemy import Engine, create_engine, text

from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Settings, unique: Callable[[str], str]) -> Iterator[Settings]:
    """Settings for one test: its own PostgreSQL schema and MongoDB database."""
    schema = unique("t").replace("-", "_")
    engine = create_engine(stack.database_url, pool_pre_ping=True)  # survives a test that restarts PostgreSQL
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    mongo_db = unique("t")
    s = stack.model_copy(update={"database_schema": schema, "mongo_database": mongo_db})
    try:
        yield s
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        client: MongoClient = MongoClient(stack.mongo_url, serverSelectionTimeoutMS=5000)
        client.drop_database(mongo_db)
        client.close()


@pytest.fixture
def topic_factory(stack: Settings, unique: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """topic_factory("name", partitions=1) creates a uniquely named topic (unique per call,
    so one test may ask for the same prefix twice), deleted afterwards."""
    made: list[str] = []

    def make(prefix: str, partitions: int = 1) -> str:
        name = f"{unique(prefix)}-{len(made)}"
        create_topics(stack, [TopicSpec(name, partitions, 3600_000)])
        made.append(name)
        return name

    yield make
    delete_topics(stack, made)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The common database of this test's schema, migrated."""
    migrate(settings)
    eng = make_engine(settings, pool_size=3)
    yield eng
    eng.dispose()
