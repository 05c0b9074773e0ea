"""ReliableProducer after records it could not get acknowledged: the caller is told (never a
false acknowledgement), a new producer takes over, and the next records go through it. Real
broker; "stuck" is a topic that does not exist (the broker never takes its records, as a
producer stuck after a broker restart never delivers)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from syncflow.errors import NotAcknowledgedError
from syncflow.settings import Settings
from syncflow.streams.producer import OutgoingRecord, ReliableProducer


def count(settings: Settings, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"count-{topic}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return high - low
    finally:
        consumer.close()


def test_records_never_acknowledged_fail_their_call_and_a_new_producer_takes_over(
        stack: Settings, topics, unique: Callable[[str], str]) -> None:
    good = topics.create("producer-good")
    missing = unique("producer-missing")  # never created: its records are never acknowledged
    settings = stack
    producer = ReliableProducer(settings)
    results: dict[str, object] = {}

    def send(name: str, topic: str) -> None:
        try:
            results[name] = producer.send_all([OutgoingRecord(topic, b"k", name.encode())], timeout=3)
        except NotAcknowledgedError as exc:
            results[name] = exc

    stuck = [threading.Thread(target=send, args=(f"stuck-{n}", missing)) for n in range(3)]
    for t in stuck:
        t.start()
    for t in stuck:
        t.join(30)
    assert all(isinstance(results[f"stuck-{n}"], NotAcknowledgedError) for n in range(3)), results

    # the old producer would wait for the never-acknowledged records on every later flush
    assert producer.send_all([OutgoingRecord(good, b"k", b"after")], timeout=20) == 1
    assert count(settings, good) == 1
    producer.close()
