"""Topic administration through confluent-kafka's AdminClient."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from syncflow.streams.security import kafka_client_config
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec, catalogue


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
