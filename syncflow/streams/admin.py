"""The one Kafka admin client of syncflow (confluent-kafka's AdminClient): topic creation and
deletion, partitions, watermarks, consumer groups' committed offsets, states and lag."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from syncflow.errors import OpsError
from syncflow.settings import Settings
from syncflow.streams.security import kafka_client_config
from syncflow.streams.topics import TopicSpec, catalogue

TP = tuple[str, int]  # (topic, partition)
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has committed nothing there
RETRIABLE = {"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT"}
T = TypeVar("T")


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(kafka_client_config(settings))


def create_topics(settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0) -> dict[str, str]:
    """Create the topics that do not exist yet. Returns {name: "created" | "exists"}."""
    specs = catalogue(settings) if specs is None else specs
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    result = {s.name: "exists" for s in specs if s.name in existing}
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.topic_config())
        for s in specs
        if s.name not in existing
    ]
    if new:
        for name, future in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                future.result(timeout)
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                result[name] = "exists"
    return result


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    if not names:
        return
    admin = admin_client(settings)  # kept alive until the futures resolve
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def _retrying(call: Callable[[], T], attempts: int = 6) -> T:
    """Group requests meet NOT_COORDINATOR while the coordinator moves or loads: try again."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].name() not in RETRIABLE or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str
    members: int


def topic_partitions(admin: AdminClient, topics: list[str], timeout: float = 10.0) -> list[TP]:
    """Every partition of the given topics; an unknown topic is an OpsError."""
    metadata = admin.list_topics(timeout=timeout)
    out: list[TP] = []
    for topic in topics:
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None:
            raise OpsError(f"topic {topic!r} does not exist")
        out += [(topic, p) for p in sorted(meta.partitions)]
    return out


def existing_topics(admin: AdminClient, timeout: float = 10.0) -> set[str]:
    return set(admin.list_topics(timeout=timeout).topics)


def committed_offsets(admin: AdminClient, group: str, timeout: float = 10.0) -> dict[TP, int]:
    """What the group has committed, for every partition it has committed on."""
    request = [ConsumerGroupTopicPartitions(group)]
    result = _retrying(lambda: admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result(timeout))
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}


def _list_offsets(admin: AdminClient, specs: dict[TP, OffsetSpec], timeout: float) -> dict[TP, int]:
    if not specs:
        return {}
    request = {TopicPartition(t, p): spec for (t, p), spec in specs.items()}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in futures.items()}


def watermarks(admin: AdminClient, tps: list[TP], timeout: float = 10.0) -> dict[TP, tuple[int, int]]:
    """(low, high) per partition: the first offset still stored and the next to be written."""
    low = _list_offsets(admin, {tp: OffsetSpec.earliest() for tp in tps}, timeout)
    high = _list_offsets(admin, {tp: OffsetSpec.latest() for tp in tps}, timeout)
    return {tp: (low[tp], high[tp]) for tp in tps}


def offsets_for_time(admin: AdminClient, tps: list[TP], timestamp_ms: int, timeout: float = 10.0) -> dict[TP, int]:
    """The first offset at or after the timestamp per partition; -1 where there is none."""
    return _list_offsets(admin, {tp: OffsetSpec.for_timestamp(timestamp_ms) for tp in tps}, timeout)


def group_state(admin: AdminClient, group: str, timeout: float = 10.0) -> GroupState:
    """State and member count; a group Kafka has never seen is reported as 'DEAD' with 0 members."""
    try:
        desc = _retrying(lambda: admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout))
    except KafkaException as exc:
        if exc.args[0].name() in {"GROUP_ID_NOT_FOUND", "COORDINATOR_NOT_AVAILABLE"}:
            return GroupState(group, "DEAD", 0)
        raise
    return GroupState(group, desc.state.name, len(desc.members or []))


def alter_group_offsets(admin: AdminClient, group: str, offsets: dict[TP, int], timeout: float = 10.0) -> None:
    """Set the group's committed offsets (Kafka refuses while the group has members)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())])
    result = _retrying(lambda: admin.alter_consumer_group_offsets([request], request_timeout=timeout)[group].result(timeout))
    failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
    if failed:
        raise OpsError(f"Kafka refused the new offsets for {group}: {failed[0].error}")


def partition_lag(committed: int | None, low: int, high: int) -> int:
    """Records the group still has to read: from its committed offset (or, without one, from
    the oldest stored record) up to the high watermark."""
    start = low if committed is None or committed < low else committed
    return max(high - start, 0)


def group_lag(admin: AdminClient, group: str, topics: list[str] | None = None, timeout: float = 10.0) -> dict[TP, int]:
    """Lag per partition of a group: over the given topics, or the topics it has committed on."""
    committed = committed_offsets(admin, group, timeout)
    if topics is None:
        tps = sorted(committed)
    else:
        present = existing_topics(admin, timeout)
        tps = topic_partitions(admin, [t for t in topics if t in present], timeout)
    marks = watermarks(admin, tps, timeout)
    return {tp: partition_lag(committed.get(tp), *marks[tp]) for tp in tps}
