"""The one way syncflow produces to Kafka: idempotent, acks=all, compressed, and a flush that
tells which records the broker did not take."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from syncflow.errors import NotAcknowledgedError
from syncflow.streams.records import Headers
from syncflow.streams.security import kafka_client_config
from syncflow.settings import Settings

log = logging.getLogger(__name__)


def producer_config(settings: Settings, **overrides: object) -> dict[str, object]:
    cfg: dict[str, object] = kafka_client_config(settings)
    cfg.update({
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
        "message.timeout.ms": 120000,
        "message.max.bytes": settings.kafka_max_message_bytes,
    })
    cfg.update(overrides)
    return cfg


@dataclass
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    partition: int | None = None


class ReliableProducer:
    """A confluent-kafka Producer whose `send_all` returns only when the broker has
    acknowledged every record, or raises NotAcknowledgedError naming the ones it did not."""

    def __init__(self, settings: Settings, **overrides: object):
        self._config = producer_config(settings, **overrides)
        self._producer = Producer(self._config)
        self._replacing = threading.Lock()

    @property
    def raw(self) -> Producer:
        return self._producer

    def send_all(self, records: Iterable[OutgoingRecord], timeout: float = 60.0) -> int:
        """Produce every record and wait up to `timeout` for the broker's acknowledgements.
        Safe from several threads at once: each call waits on the producer it produced with,
        so a replacement (below) never makes a call report records it did not see acknowledged."""
        producer = self._producer
        failures: list[tuple[OutgoingRecord, KafkaError | None]] = []
        pending = 0

        def on_delivery(rec: OutgoingRecord):
            def callback(err: KafkaError | None, _msg: Message) -> None:
                if err is not None:
                    failures.append((rec, err))

            return callback

        for rec in records:
            kwargs: dict[str, object] = {"headers": rec.headers, "on_delivery": on_delivery(rec)}
            if rec.partition is not None:
                kwargs["partition"] = rec.partition
            while True:
                try:
                    producer.produce(rec.topic, rec.value, rec.key, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            pending += 1
        remaining = producer.flush(timeout)
        if remaining:
            failures.append((OutgoingRecord("?", None, None), None))
            self._replace(producer, remaining)
        if failures:
            raise NotAcknowledgedError(failures)
        return pending

    def _replace(self, stuck: Producer, remaining: int) -> None:
        """Put a new producer in place of one whose records stay unacknowledged past the
        timeout, and fail what it still holds. After a broker restart, librdkafka's idempotent
        producer can stay stuck for good (a connector's producer delivered nothing for 25
        minutes after one, while its neighbours recovered); a new producer, with a new
        producer id, starts clean. What the old one held was not acknowledged: every caller
        sends it again, and a second copy is a duplicate the consumers already drop."""
        with self._replacing:
            if self._producer is not stuck:
                return  # another call replaced it already
            self._producer = Producer(self._config)
        log.warning("producer: %d record(s) not acknowledged in time; a new producer takes over", remaining)
        stuck.purge()  # its callers' flushes now end, with these records failed
        stuck.flush(0)

    def close(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
