"""The topic catalogue: the one source of topic names, partition counts, retention and
compaction, and of the topics and consumer group of each role (`SyncInTopics`,
`sync_out_topics`). `syncflow topics create` creates everything listed here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from syncflow.settings import Settings

SOURCES = ("yardi", "realpage", "insight", "lessen360")
ENTITY_TYPES = ("location", "resident", "service_request", "attachment")
SYNC_IN_DLQ = "sync-in.dlq"
BATCH_OVERHEAD = 1024  # bytes a record batch adds around its records


def raw_topic(source: str) -> str:
    return f"raw.{source}"


def changes_topic(entity_type: str) -> str:
    return f"changes.{entity_type}"


def retry_topic(target: str, tier: int) -> str:
    """Retry tier `tier` (1-based) of a target."""
    return f"sync-out.{target}.retry.{tier}"


def dependency_topic(target: str) -> str:
    """A target's dependency-wait lane: records waiting for what they reference, all with one
    delay (sync_out.dependency_retry_delay_s), apart from the retry tiers' longer delays."""
    return f"sync-out.{target}.dependency"


def target_dlq(target: str) -> str:
    return f"sync-out.{target}.dlq"


def sync_out_group(target: str) -> str:
    return f"sync-out.{target}"


def raw_key(entity_type: str, source_id: str) -> str:
    """Key on raw.<source>: keeps one source record's history on one partition."""
    return f"{entity_type}:{source_id}"


# -- the topics and consumer group of each role ----------------------------------------------
@dataclass(frozen=True)
class SyncInTopics:
    """The topics one sync-in app reads and writes. Built from the catalogue plus
    `settings.sync_in.topic_suffix`, so tests and benchmarks get their own."""

    raw: Mapping[str, str]  # raw topic -> source system
    dlq: str
    changes_suffix: str = ""

    def changes(self, entity_type: str) -> str:
        return changes_topic(entity_type) + self.changes_suffix

    @classmethod
    def from_settings(cls, settings: Settings, sources: Sequence[str] = SOURCES) -> "SyncInTopics":
        suffix = settings.sync_in.topic_suffix
        return cls({raw_topic(s) + suffix: s for s in sources}, SYNC_IN_DLQ + suffix, suffix)


@dataclass(frozen=True)
class SyncOutTopics:
    changes: list[str]
    tiers: list[str]  # retry tiers, index 0 = tier 1
    dependency: str  # the dependency-wait lane
    dlq: str
    group: str

    @property
    def retries(self) -> list[str]:
        """Every delayed topic the worker reads (the tiers, then the dependency lane)."""
        return [*self.tiers, self.dependency]


def sync_out_topics(settings: Settings, target: str) -> SyncOutTopics:
    """The topics and group of a target's worker, with settings.sync_out.topic_suffix."""
    sfx = settings.sync_out.topic_suffix
    entity_types = settings.sync_out.targets[target].entity_types
    return SyncOutTopics(
        changes=[changes_topic(e) + sfx for e in entity_types],
        tiers=[retry_topic(target, n) + sfx for n in range(1, settings.sync_out.retry_tiers + 1)],
        dependency=dependency_topic(target) + sfx,
        dlq=target_dlq(target) + sfx,
        group=sync_out_group(target) + sfx,
    )


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def topic_config(self) -> dict[str, str]:
        cfg = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "compact,delete" if self.compacted else "delete",
        }
        cfg.update(self.config)
        return cfg


def catalogue(settings: Settings) -> list[TopicSpec]:
    """Every topic syncflow uses, for the configured sources and targets."""
    t = settings.topics
    # a producer's largest record, plus room for the record batch around it
    sized = {"max.message.bytes": str(settings.kafka_max_message_bytes + BATCH_OVERHEAD)}
    specs = [TopicSpec(raw_topic(s), t.raw_partitions, t.raw_retention_ms, config=sized) for s in SOURCES]
    specs += [TopicSpec(changes_topic(e), t.changes_partitions, t.changes_retention_ms, config=sized) for e in ENTITY_TYPES]
    specs.append(TopicSpec(SYNC_IN_DLQ, t.dlq_partitions, t.dlq_retention_ms, config=sized))
    for target in settings.sync_out.targets:
        for tier in range(1, settings.sync_out.retry_tiers + 1):
            specs.append(TopicSpec(retry_topic(target, tier), t.retry_partitions, t.changes_retention_ms, config=sized))
        specs.append(TopicSpec(dependency_topic(target), t.retry_partitions, t.changes_retention_ms, config=sized))
        specs.append(TopicSpec(target_dlq(target), t.dlq_partitions, t.dlq_retention_ms, config=sized))
    return specs
