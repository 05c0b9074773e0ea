"""Bounded scans of Kafka topics for one record's keys or trace id (`syncflow trace`): the
last `per_partition` records of every partition of the given topics, read with a consumer
that only assigns (never joins a group, commits nothing). Topics that do not exist are
skipped; what was not read (older records) is reported, never guessed."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

from syncflow.errors import OpsError
from syncflow.streams import admin as kafka_admin
from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.streams.records import KafkaRecord
from syncflow.streams.security import kafka_client_config
from syncflow.settings import Settings


@dataclass
class ScanResult:
    records: list[KafkaRecord] = field(default_factory=list)  # matches, per topic and partition in offset order
    scanned: dict[str, int] = field(default_factory=dict)  # topic -> records read
    not_scanned: dict[str, int] = field(default_factory=dict)  # topic -> older records left unread
    missing_topics: list[str] = field(default_factory=list)


def scan_for(settings: Settings, topics: Iterable[str], *, keys: Iterable[bytes] = (), trace_ids: Iterable[str] = (),
             per_partition: int = 5000, timeout: float = 15.0) -> ScanResult:
    """Records of `topics` whose key is one of `keys` or whose trace-id header is one of
    `trace_ids`, among the last `per_partition` records of each partition."""
    wanted_keys, wanted_traces = set(keys), set(trace_ids)
    result = ScanResult()
    admin = kafka_admin.admin_client(settings)
    present = kafka_admin.existing_topics(admin)
    names = list(dict.fromkeys(topics))
    result.missing_topics = [t for t in names if t not in present]
    tps = kafka_admin.topic_partitions(admin, [t for t in names if t in present])
    marks = kafka_admin.watermarks(admin, tps) if tps else {}
    starts: dict[kafka_admin.TP, int] = {}
    for tp, (low, high) in marks.items():
        start = max(low, high - max(per_partition, 0))
        result.not_scanned[tp[0]] = result.not_scanned.get(tp[0], 0) + (start - low)
        result.scanned.setdefault(tp[0], 0)
        if start < high:
            starts[tp] = start
    if not starts or not (wanted_keys or wanted_traces):
        return result
    consumer = Consumer(kafka_client_config(settings, **{
        "group.id": f"syncflow-trace-{uuid.uuid4().hex}",  # assign() only: never joins
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in sorted(starts.items())])
        todo, idle = set(starts), 0.0
        while todo:
            msgs = consumer.consume(500, 0.5)
            if not msgs:
                idle += 0.5
                if idle > timeout:
                    raise OpsError(f"no records for {timeout:g}s while scanning {sorted(todo)[:5]}")
                continue
            idle = 0.0
            for msg in msgs:
                tp = (msg.topic(), msg.partition())
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(tp)
                        continue
                    raise OpsError(f"reading {tp}: {msg.error()}")
                if tp not in todo:
                    continue
                high = marks[tp][1]
                if msg.offset() >= high:
                    todo.discard(tp)
                    continue
                result.scanned[tp[0]] += 1
                if msg.key() in wanted_keys or (wanted_traces and header_value(msg.headers(), TRACE_ID) in wanted_traces):
                    result.records.append(KafkaRecord(**KafkaRecord.fields_of(msg)))
                if msg.offset() + 1 >= high:
                    todo.discard(tp)
    finally:
        consumer.close()
    result.records.sort(key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
    return result
