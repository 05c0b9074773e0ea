"""The broker is real: confluent-kafka produces and consumes through it, and the
AdminClient creates and deletes topics."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings

pytestmark = pytest.mark.integration


def consume(settings: Settings, topic: str, group: str, count: int, timeout: float = 30.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            messages.append(msg)
        if messages:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return messages


def test_produce_and_consume_through_the_broker(stack: Settings, topics, unique: Callable[[str], str]) -> None:
    topic = topics.create("smoke-kafka", partitions=2)
    records = [
        OutgoingRecord(topic, f"key-{i % 3}".encode(), f"value-{i}".encode(), [("trace-id", str(i).encode())])
        for i in range(20)
    ]
    assert ReliableProducer(stack).send_all(records) == 20

    group = unique("smoke-group")
    messages = consume(stack, topic, group, 20)
    assert sorted(m.value() for m in messages) == sorted(r.value for r in records)
    by_key: dict[bytes, set[int]] = {}
    for m in messages:
        by_key.setdefault(m.key(), set()).add(m.partition())
        assert dict(m.headers())["trace-id"] == m.value().split(b"-")[1]
    assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition

    # the group's committed offsets cover every record
    checker = Consumer({"bootstrap.servers": stack.kafka_bootstrap_servers, "group.id": group})
    try:
        committed = checker.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    finally:
        checker.close()
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 20


def test_admin_creates_and_deletes_a_topic(stack: Settings, unique: Callable[[str], str], wait_until) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap_servers})
    name = unique("smoke-admin")
    new = NewTopic(name, num_partitions=3, replication_factor=1, config={"cleanup.policy": "compact"})
    try:
        admin.create_topics([new], operation_timeout=30)[name].result(30)
        # the broker answering metadata may learn of the new topic a moment after the controller
        wait_until(lambda: admin.list_topics(name, timeout=10).topics[name].error is None, 30, f"{name} in the metadata")
        metadata = admin.list_topics(name, timeout=10).topics[name]
        assert len(metadata.partitions) == 3
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(30)
        assert config["cleanup.policy"].value == "compact"
        with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
            admin.create_topics([new], operation_timeout=30)[name].result(30)
    finally:
        admin.delete_topics([name], operation_timeout=30)[name].result(30)
    wait_until(lambda: name not in admin.list_topics(timeout=10).topics, 30, f"{name} to disappear")
