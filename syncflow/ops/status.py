"""`status`: one look at where records are. Counts by sync status per entity type and source
(sync-in) and per entity type and target (sync-out), the oldest pending item, consumer lag
per group and DLQ depth per DLQ topic.

The common-database tables are read through the named queries of sinks/common_db/counts.py,
against settings.database_schema."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine

from syncflow.errors import TablesMissingError
from syncflow.streams import admin as kafka_admin
from syncflow.sinks.common_db import counts
from syncflow.sinks.common_db.pauses import list_pauses
from syncflow.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, SyncInTopics, raw_topic, sync_out_group, sync_out_topics, target_dlq

REQUIRED_TABLES = ("sync_master_data", "entity_sync_status")
PENDING = ("pending", "retry")


@dataclass(frozen=True)
class StatusCount:
    side: str  # "sync-in" (by source) or "sync-out" (by target)
    entity_type: str
    system: str  # source system or target
    status: str
    count: int
    oldest_age_s: float | None  # age of the oldest row in this status (pending/retry only)


@dataclass(frozen=True)
class GroupLag:
    group: str
    lag: int
    partitions: int


@dataclass(frozen=True)
class ParkedWaiting:
    """Records of a target parked in its DLQ for a reference, sent again once it arrives."""

    target: str
    count: int
    oldest_age_s: float


@dataclass
class StatusReport:
    counts: list[StatusCount] = field(default_factory=list)
    lag: list[GroupLag] = field(default_factory=list)
    dlq_depth: dict[str, int] = field(default_factory=dict)
    dlq_not_redriven: dict[str, int] = field(default_factory=dict)
    unpublished_versions: int | None = None
    parked: list[ParkedWaiting] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "counts": [asdict(c) for c in self.counts],
            "lag": [asdict(g) for g in self.lag],
            "dlq_depth": self.dlq_depth,
            "dlq_not_redriven": self.dlq_not_redriven,
            "unpublished_versions": self.unpublished_versions,
            "parked": [asdict(p) for p in self.parked],
            "missing_tables": self.missing_tables,
        }


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    """Each syncflow consumer group and the topics it reads (with the configured topic
    suffixes, as the workers build them)."""
    groups = {settings.sync_in.group_id: list(SyncInTopics.from_settings(settings).raw)}
    for target in settings.sync_out.targets:
        topics = sync_out_topics(settings, target)
        groups[topics.group] = topics.changes + topics.tiers
    return groups


def dlq_topics(settings: Settings) -> list[str]:
    sfx_in, sfx_out = settings.sync_in.topic_suffix, settings.sync_out.topic_suffix
    return [SYNC_IN_DLQ + sfx_in] + [target_dlq(t) + sfx_out for t in settings.sync_out.targets]


def missing_tables(engine: Engine, schema: str) -> list[str]:
    present = counts.tables_in(engine, schema)
    return [t for t in REQUIRED_TABLES if t not in present]


def _age(oldest: datetime | None, now: datetime) -> float | None:
    return None if oldest is None else max((now - oldest).total_seconds(), 0.0)


def status_counts(engine: Engine, schema: str, now: datetime | None = None) -> list[StatusCount]:
    """Counts per status; raises TablesMissingError when the tables are not there yet."""
    missing = missing_tables(engine, schema)
    if missing:
        raise TablesMissingError(f"schema {schema!r} has no table {', '.join(missing)} (run the migrations first)")
    now = now or datetime.now(timezone.utc)
    out: list[StatusCount] = []
    with engine.connect() as conn:
        for side, entity_type, system, status, count, oldest in counts.status_rows(conn, schema):
            age = _age(oldest, now) if status in PENDING else None
            out.append(StatusCount(side, entity_type, system, status, count, age))
    return out


def parked_waiting(engine: Engine, schema: str, now: datetime | None = None) -> list[ParkedWaiting]:
    """Per target, the records parked for a reference (none before migration 0007)."""
    if "parked_dependents" not in counts.tables_in(engine, schema):
        return []
    now = now or datetime.now(timezone.utc)
    with engine.connect() as conn:
        return [ParkedWaiting(target, count, _age(oldest, now) or 0.0) for target, count, oldest in counts.parked_rows(conn, schema)]


def unpublished_versions(engine: Engine, schema: str) -> int | None:
    """Versions committed but not yet published as change events (the outbox backlog)."""
    return counts.unpublished_in(engine, schema)


def lag_by_group(admin: AdminClient, groups: dict[str, list[str]]) -> list[GroupLag]:
    out = []
    for group, topics in groups.items():
        lag = kafka_admin.group_lag(admin, group, topics)
        out.append(GroupLag(group, sum(lag.values()), len(lag)))
    return out


def dlq_depth(admin: AdminClient, topics: list[str]) -> dict[str, int]:
    """Records stored per DLQ topic (high - low watermark; 0 for a topic not created yet)."""
    present = kafka_admin.existing_topics(admin)
    depth = {t: 0 for t in topics}
    tps = kafka_admin.topic_partitions(admin, [t for t in topics if t in present])
    for (topic, _), (low, high) in kafka_admin.watermarks(admin, tps).items():
        depth[topic] += high - low
    return depth


def dlq_not_redriven(admin: AdminClient, topics: list[str], redrive_group: str) -> dict[str, int]:
    """Records per DLQ topic after the redrive group's committed offset: not handled yet."""
    present = kafka_admin.existing_topics(admin)
    tps = kafka_admin.topic_partitions(admin, [t for t in topics if t in present])
    committed = kafka_admin.committed_offsets(admin, redrive_group)
    out = {t: 0 for t in topics}
    for tp, (low, high) in kafka_admin.watermarks(admin, tps).items():
        out[tp[0]] += kafka_admin.partition_lag(committed.get(tp), low, high)
    return out


def collect_status(settings: Settings, engine: Engine, admin: AdminClient) -> StatusReport:
    """Everything `syncflow status` shows; missing tables are reported, not raised."""
    report = StatusReport()
    try:
        report.counts = status_counts(engine, settings.database_schema)
        report.unpublished_versions = unpublished_versions(engine, settings.database_schema)
        report.parked = parked_waiting(engine, settings.database_schema)
    except TablesMissingError:
        report.missing_tables = missing_tables(engine, settings.database_schema)
    report.lag = lag_by_group(admin, consumer_groups(settings))
    report.dlq_depth = dlq_depth(admin, dlq_topics(settings))
    report.dlq_not_redriven = dlq_not_redriven(admin, dlq_topics(settings), settings.ops.redrive_group)
    return report


def pause_status(engine: Engine, settings: Any, admin: Any) -> list[dict[str, Any]]:
    """Every pause with its age and, as the records held, the consumer lag behind it: the
    target's sync-out group (all its topics) or the sync-in group on the source's raw topic.
    Approximate: the lag also counts records of unpaused scopes not read yet."""
    scopes = list_pauses(engine)
    groups = consumer_groups(settings)
    now = datetime.now(timezone.utc)
    lag_cache: dict[tuple[str, str], int | None] = {}
    out = []
    for s in scopes:
        if s.side == "sync-out":
            group = sync_out_group(s.system) + settings.sync_out.topic_suffix
            topics = groups.get(group, [])
        else:
            group = settings.sync_in.group_id
            topics = [raw_topic(s.system) + settings.sync_in.topic_suffix]
        key = (group, ",".join(topics))
        if key not in lag_cache:
            try:
                lag_cache[key] = sum(kafka_admin.group_lag(admin, group, topics).values()) if topics else 0
            except Exception:  # noqa: BLE001 - a status shows what it can
                lag_cache[key] = None
        d = s.to_dict()
        d["age_s"] = (now - s.since).total_seconds() if s.since else None
        d["held_approx"] = lag_cache[key]
        d["group"] = group
        out.append(d)
    return out
