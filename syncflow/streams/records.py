"""A consumed Kafka record as plain data: what DLQ headers, ordering and commits need, free
of the client library's message type so the logic around it tests without a broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @classmethod
    def fields_of(cls, msg: Any) -> dict[str, Any]:
        """The base fields of a confluent-kafka Message, for building this class or a subclass."""
        return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "timestamp_ms": msg.timestamp()[1], "key": msg.key(), "value": msg.value(),
                "headers": list(msg.headers() or [])}
