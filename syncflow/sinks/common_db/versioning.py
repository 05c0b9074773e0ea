"""Deciding versions without a database: which records change an entity, their version
numbers, change types, changed fields and JSON-safe snapshots. The repository loads the
current state, calls `plan_versions`, and writes what it returns."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

from syncflow.model import EntityKey, EntityRecord

CREATE, UPDATE, DELETE = "create", "update", "delete"


@dataclass(frozen=True)
class MasterState:
    """What a source last said about an entity: its hash and its modification time."""

    data_hash: str
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class EntityHead:
    """An entity's state before the batch: its latest version and that version's snapshot."""

    current_version: int = 0
    deleted: bool = False
    snapshot: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PlannedVersion:
    item_index: int
    entity_type: str
    entity_id: str
    version_number: int
    change_type: str
    changed_fields: list[str]
    snapshot: dict[str, Any]


MasterKey = tuple[str, str, str]  # (entity_type, entity_id, source_system)


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy: datetimes as ISO-8601 UTC, dates ISO, Decimals as strings,
    bytes as base64, non-finite floats as strings (JSONB refuses NaN)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    return str(value)


def changed_fields(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Top-level fields that differ from the previous snapshot; every field when there is none."""
    if previous is None:
        return sorted(current)
    keys = set(previous) | set(current)
    return sorted(k for k in keys if previous.get(k) != current.get(k))


def change_type_for(head: EntityHead, deleted: bool) -> str:
    """delete for a deletion; create when the entity has no live version (never seen, a
    placeholder, or deleted before); update otherwise."""
    if deleted:
        return DELETE
    if head.current_version == 0 or head.deleted:
        return CREATE
    return UPDATE


def is_news(item: EntityRecord, last: MasterState | None) -> bool:
    """Does this record change what its source last said? Not when the hash is the same
    (a re-send), nor when the source changed it before the record already applied (a
    replayed or late record: stale). Without modification times the hash decides."""
    if last is None:
        return True
    if last.data_hash == item.data_hash:
        return False
    updated = item.source_updated_at
    return updated is None or last.source_updated_at is None or updated >= last.source_updated_at


def plan_versions(
    items: Sequence[EntityRecord],
    heads: Mapping[EntityKey, EntityHead],
    masters: Mapping[MasterKey, MasterState],
) -> list[PlannedVersion]:
    """Apply the items in order. A record that is no news (`is_news`) changes nothing;
    every other record becomes the entity's next version."""
    heads = dict(heads)
    states = dict(masters)
    planned: list[PlannedVersion] = []
    for index, item in enumerate(items):
        mkey = (item.entity_type, item.entity_id, item.source_system)
        if not is_news(item, states.get(mkey)):
            continue
        ekey = (item.entity_type, item.entity_id)
        head = heads.get(ekey, EntityHead())
        snapshot = json_safe(dict(item.entity))
        kind = change_type_for(head, item.deleted)
        previous = None if kind == CREATE and head.current_version == 0 else head.snapshot
        version = head.current_version + 1
        planned.append(
            PlannedVersion(
                item_index=index,
                entity_type=item.entity_type,
                entity_id=item.entity_id,
                version_number=version,
                change_type=kind,
                changed_fields=changed_fields(previous, snapshot),
                snapshot=snapshot,
            )
        )
        heads[ekey] = EntityHead(current_version=version, deleted=item.deleted, snapshot=snapshot)
        states[mkey] = MasterState(item.data_hash, item.source_updated_at)
    return planned
