"""Bounded scans of Kafka topics for one record's keys or trace id (`syncflow trace`): the
last `per_partition` records of every partition of the given topics, read with a consumer
that only assigns (never joins a group, commits nothing). Topics that do not exist are
skipped; what was not read (older records) is reported, never guessed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from syncflow.ops.partition_read import assigning_consumer, read_between
from syncflow.streams import admin as kafka_admin
from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.streams.records import KafkaRecord
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
    consumer = assigning_consumer(settings, "trace")
    try:
        for msg in read_between(consumer, starts, {tp: high for tp, (_, high) in marks.items()}, timeout):
            result.scanned[msg.topic()] += 1
            if msg.key() in wanted_keys or (wanted_traces and header_value(msg.headers(), TRACE_ID) in wanted_traces):
                result.records.append(KafkaRecord(**KafkaRecord.fields_of(msg)))
    finally:
        consumer.close()
    result.records.sort(key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
    return result
