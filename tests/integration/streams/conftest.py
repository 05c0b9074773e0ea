"""Topics for the streams smoke tests, created and deleted through one AdminClient that
lives as long as the fixture (a client dropped right after a request destroys its handle
and fails the pending futures)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from syncflow.settings import Settings


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
