"""Non-blocking retry tiers: a retry-tier partition whose head record is not due yet is paused
and rewound to that record, then resumed at its due time. The changes topics and the other
tiers keep flowing meanwhile; records in one tier share one delay, so due times only grow
along a partition and holding the head holds nothing that is due."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from syncflow.agents.sync_out.offsets import TopicPartitionKey
from syncflow.streams.dead_letters import RETRY_DUE

log = logging.getLogger(__name__)


def due_ms(failure: dict[str, str]) -> int | None:
    value = failure.get(RETRY_DUE)
    return int(value) if value and value.isdigit() else None


class RetryGate:
    def __init__(self) -> None:
        self._held: dict[TopicPartitionKey, tuple[int, float]] = {}  # → (offset, due epoch s)

    def is_held(self, tp: TopicPartitionKey) -> bool:
        return tp in self._held

    def held(self) -> set[TopicPartitionKey]:
        return set(self._held)

    def hold(self, consumer: Consumer, msg: Message, due_s: float) -> None:
        """Pause the record's partition and rewind to it, to be read again when due."""
        tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
        self._held[(msg.topic(), msg.partition())] = (msg.offset(), due_s)
        consumer.pause([tp])
        _seek(consumer, tp)

    def next_due(self) -> float | None:
        return min((due for _, due in self._held.values()), default=None)

    def release_due(self, consumer: Consumer, now_s: float) -> list[TopicPartitionKey]:
        """Resume the partitions whose head record is due."""
        due = [tp for tp, (_, at) in self._held.items() if at <= now_s]
        if due:
            partitions = [TopicPartition(t, p, self._held.pop((t, p))[0]) for t, p in due]
            consumer.resume(partitions)
            for tp in partitions:  # again: a seek refused at hold time would skip the record
                _seek(consumer, tp)
        return due

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        for tp in tps:
            self._held.pop(tp, None)


def _seek(consumer: Consumer, tp: TopicPartition) -> None:
    """Seek, and survive a refusal (e.g. while the broker is away): release seeks again."""
    try:
        consumer.seek(tp)
    except KafkaException as exc:
        log.warning("retry gate: seek %s[%d] to %d refused: %s", tp.topic, tp.partition, tp.offset, exc)
