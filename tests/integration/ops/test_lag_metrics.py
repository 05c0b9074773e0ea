"""The queue-length gauges read from the real broker: lag of a group that is behind and the
depth of a DLQ topic, as Prometheus scrapes them."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from syncflow.streams.metrics import CONSUMER_LAG, DLQ_DEPTH, register_lag_collector
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings
from tests.integration.ops.conftest import consume_all


def test_lag_and_dlq_depth_gauges(stack: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]) -> None:
    topic, dlq, group = topic_factory("lagged"), topic_factory("dlq"), unique("group")
    producer = ReliableProducer(stack)
    producer.send_all([OutgoingRecord(topic, None, b"x") for _ in range(2)] + [OutgoingRecord(dlq, None, b"d") for _ in range(4)])
    consume_all(stack, topic, group, expected=2)
    producer.send_all([OutgoingRecord(topic, None, b"x") for _ in range(3)])
    registry = CollectorRegistry()
    collector = register_lag_collector(registry, stack, {group: [topic]}, [dlq])
    assert registry.get_sample_value(CONSUMER_LAG, {"group": group, "topic": topic, "partition": "0"}) == 3
    assert registry.get_sample_value(DLQ_DEPTH, {"topic": dlq}) == 4
    assert collector.total_lag(group) == 3
