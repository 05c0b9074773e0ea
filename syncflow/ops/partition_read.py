"""Reading Kafka partitions between known offsets, as the operations commands do (`dlq
list|show|redrive`, the key scan of `syncflow trace`): a consumer that assigns partitions
itself (it joins no group; a group id only says whose committed offsets it reads and
commits) and stops at each partition's end offset, so a topic still being written to does
not keep the command reading."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from syncflow.errors import OpsError
from syncflow.streams.admin import TP
from syncflow.streams.security import kafka_client_config
from syncflow.settings import Settings

FETCH_RECORDS = 500  # records asked for per consume call
POLL_S = 0.5


def assigning_consumer(settings: Settings, purpose: str, group: str | None = None) -> Consumer:
    """A consumer for assign() only that commits nothing by itself and reports partition
    ends; without `group`, a throwaway group id `syncflow-<purpose>-<random>`."""
    return Consumer(kafka_client_config(settings, **{
        "group.id": group or f"syncflow-{purpose}-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))


def read_between(consumer: Consumer, starts: dict[TP, int], ends: dict[TP, int], timeout: float) -> Iterator[Message]:
    """The records of each partition from its start offset up to (not including) its end
    offset, in offset order per partition. OpsError when nothing comes for `timeout`
    seconds or the broker reports an error."""
    todo = {tp for tp, start in starts.items() if start < ends[tp]}
    if not todo:
        return
    consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in sorted(todo)])
    idle = 0.0
    while todo:
        msgs = consumer.consume(FETCH_RECORDS, POLL_S)
        if not msgs:
            idle += POLL_S
            if idle > timeout:
                raise OpsError(f"no records for {timeout:g}s while reading {sorted(todo)[:5]}")
            continue
        idle = 0.0
        for msg in msgs:
            tp = (msg.topic(), msg.partition())
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(tp)
                    continue
                raise OpsError(f"reading {tp}: {msg.error()}")
            if tp not in todo or msg.offset() >= ends[tp]:
                todo.discard(tp)
                continue
            yield msg
            if msg.offset() + 1 >= ends[tp]:
                todo.discard(tp)
