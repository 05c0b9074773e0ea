"""Topics for the streams smoke tests, created and deleted through one AdminClient that
lives as long as the fixture (a client dropped right after a request destroys its handle
and fails the pending futures)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from syncflow.settings import Settings, local_stack_dir

REGISTRY_ENV = "SYNCFLOW_LOCAL_SCHEMA_REGISTRY_URL"


class Topics:
    """Creates uniquely named topics; `cleanup` deletes them and any topic with a claimed prefix."""

    def __init__(self, settings: Settings, unique: Callable[[str], str]):
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        self.unique = unique
        self.names: list[str] = []
        self.prefixes: list[str] = []

    def create(self, prefix: str, partitions: int = 1) -> str:
        name = self.unique(prefix)
        new = NewTopic(name, num_partitions=partitions, replication_factor=1, config={"retention.ms": "3600000"})
        self.admin.create_topics([new], operation_timeout=30)[name].result(30)
        self.names.append(name)
        return name

    def claim_prefix(self, prefix: str) -> None:
        """Topics a framework creates on its own (e.g. Faust's `<app id>-__assignor-__leader`)."""
        self.prefixes.append(prefix)

    def cleanup(self) -> None:
        existing = set(self.admin.list_topics(timeout=10).topics)
        doomed = [n for n in existing if n in self.names or any(n.startswith(p) for p in self.prefixes)]
        if not doomed:
            return
        for future in self.admin.delete_topics(doomed, operation_timeout=30).values():
            try:
                future.result(30)
            except KafkaException as exc:
                if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise


@pytest.fixture
def topics(stack: Settings, unique: Callable[[str], str]) -> Iterator[Topics]:
    made = Topics(stack, unique)
    yield made
    made.cleanup()


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.3)


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool], float, str], None]:
    """wait_until(condition, timeout_s, "what") polls until true, else fails the test."""
    return _wait_until


def registry_url(default: str | None = None) -> str:
    """The local schema registry: the environment, else the local stack's stack.env (where
    stack.sh writes it), else `default`; with none of them the test fails saying how to
    start the registry."""
    if url := os.environ.get(REGISTRY_ENV):
        return url
    stack_env = local_stack_dir() / "stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            if line.startswith(REGISTRY_ENV + "="):
                return line.split("=", 1)[1].strip()
    if default is not None:
        return default
    pytest.fail(f"{REGISTRY_ENV} is not set and not in {stack_env}; start the registry with "
                "`deploy/local/stack.sh up --with-registry`", pytrace=False)
