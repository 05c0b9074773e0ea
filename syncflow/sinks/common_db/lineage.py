"""Reads of one record's path through the common database (`syncflow trace`): which canonical
entity a source record, an entity id or a trace id names, the entity's versions, and what each
target holds of it. Read-only; plain SQL over the models' tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from syncflow.model import EntityKey


@dataclass(frozen=True)
class VersionRow:
    entity_type: str
    entity_id: str
    version: int
    change_type: str
    changed_fields: list[str]
    data_hash: str
    source_system: str
    source_id: str
    trace_id: str | None
    created_at: datetime
    published_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "change_type": self.change_type, "changed_fields": list(self.changed_fields),
            "hash": self.data_hash, "source_system": self.source_system, "source_id": self.source_id,
            "trace_id": self.trace_id, "created_at": _iso(self.created_at), "published_at": _iso(self.published_at),
        }  # fmt: skip


@dataclass(frozen=True)
class TargetStateRow:
    target: str
    synced_version: int
    sent_version: int
    status: str
    attempts: int
    next_retry_time: datetime | None
    last_error: str | None
    target_ref: str | None
    updated_at: datetime


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def entities_of_source_record(engine: Engine, source: str, entity_type: str, source_id: str) -> list[EntityKey]:
    """The canonical entities a source record made (one, unless identities were merged)."""
    sql = text(
        "SELECT DISTINCT entity_type, entity_id FROM sync_master_data "
        "WHERE source_system = :s AND entity_type = :t AND source_id = :i "
        "UNION SELECT DISTINCT entity_type, entity_id FROM data_versions "
        "WHERE source_system = :s AND entity_type = :t AND source_id = :i ORDER BY 2"
    )
    with engine.connect() as conn:
        return [(t, e) for t, e in conn.execute(sql, {"s": source, "t": entity_type, "i": source_id})]


def entities_with_id(engine: Engine, entity_id: str) -> list[EntityKey]:
    """Entities of any type with this canonical id (ids carry a type prefix: at most one)."""
    sql = text("SELECT DISTINCT entity_type, entity_id FROM sync_master_data WHERE entity_id = :e "
               "UNION SELECT DISTINCT entity_type, entity_id FROM data_versions WHERE entity_id = :e")
    with engine.connect() as conn:
        return [(t, e) for t, e in conn.execute(sql, {"e": entity_id})]


def entities_of_trace(engine: Engine, trace_id: str) -> list[EntityKey]:
    """Entities that have a version made by a record of this trace id."""
    sql = text("SELECT DISTINCT entity_type, entity_id FROM data_versions WHERE trace_id = :x ORDER BY 1, 2")
    with engine.connect() as conn:
        return [(t, e) for t, e in conn.execute(sql, {"x": trace_id})]


def source_records_of(engine: Engine, key: EntityKey) -> list[tuple[str, str]]:
    """(source_system, source_id) of every source record that feeds the entity."""
    sql = text("SELECT source_system, source_id FROM sync_master_data WHERE entity_type = :t AND entity_id = :e "
               "UNION SELECT source_system, source_id FROM data_versions WHERE entity_type = :t AND entity_id = :e "
               "ORDER BY 1, 2")
    with engine.connect() as conn:
        return [(s, i) for s, i in conn.execute(sql, {"t": key[0], "e": key[1]})]


def versions_of(engine: Engine, key: EntityKey) -> list[VersionRow]:
    """Every version of the entity, oldest first."""
    sql = text(
        "SELECT entity_type, entity_id, version_number, change_type, changed_fields, data_hash, source_system, "
        "source_id, trace_id, created_date, published_at FROM data_versions "
        "WHERE entity_type = :t AND entity_id = :e ORDER BY version_number"
    )
    with engine.connect() as conn:
        return [VersionRow(*row) for row in conn.execute(sql, {"t": key[0], "e": key[1]})]


def target_states_of(engine: Engine, key: EntityKey) -> list[TargetStateRow]:
    """What each target holds of the entity (target_sync_state), by target name."""
    sql = text(
        "SELECT target, synced_version, sent_version, status, attempts, next_retry_time, last_error, target_ref, "
        "updated_at FROM target_sync_state WHERE entity_type = :t AND entity_id = :e ORDER BY target"
    )
    with engine.connect() as conn:
        return [TargetStateRow(*row) for row in conn.execute(sql, {"t": key[0], "e": key[1]})]
