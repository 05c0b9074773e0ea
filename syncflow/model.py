"""The record types shared across the layers: a raw record's key and document (connectors,
sync-in, the raw store), the canonical record sync-in applies and the version it commits
(agents, the common database), and the change event, written by sync-in and read by
sync-out through one dataclass (`ChangeEvent.to_record` / `ChangeEvent.from_record`).
Plain data, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from syncflow.errors import BadChangeEventError

CHANGE_EVENT_SCHEMA = "io.syncflow.canonical.ChangeEvent"
EntityKey = tuple[str, str]  # (entity_type, entity_id): one entity, across sources and targets
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- raw records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RawKey:
    source_system: str
    entity_type: str
    source_id: str

    @property
    def doc_id(self) -> str:
        """The document's _id: FerretDB looks documents up fast only by _id."""
        return f"{self.source_system}\x1f{self.entity_type}\x1f{self.source_id}"

    def fields(self) -> dict[str, str]:
        return {"sourceSystem": self.source_system, "entityType": self.entity_type, "sourceId": self.source_id}

    def filter(self) -> dict[str, str]:
        return {"_id": self.doc_id}


@dataclass(frozen=True)
class RawDocument:
    """One raw record as received (rawData is the decoded source-native record)."""

    key: RawKey
    raw_data: Mapping[str, Any]
    hash: str
    batch_number: int | None = None
    trace_id: str | None = None


# -- canonical records and versions ----------------------------------------------------------

@dataclass(frozen=True)
class EntityRecord:
    """One validated canonical record to apply to the common database."""

    entity_type: str
    entity_id: str
    entity: Mapping[str, Any]
    data_hash: str
    source_system: str
    source_id: str
    priority: int = 5
    references: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False
    trace_id: str | None = None

    @property
    def source_updated_at(self) -> datetime | None:
        """When the source last changed the record (the canonical `source_updated_at`)."""
        value = self.entity.get("source_updated_at")
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return None


@dataclass(frozen=True)
class NewVersion:
    """A committed version as the outbox publishes it."""

    id: int
    entity_type: str
    entity_id: str
    version_number: int
    change_type: str
    changed_fields: list[str]
    snapshot: dict[str, Any]
    priority: int
    references: dict[str, str]
    source_system: str
    source_id: str
    trace_id: str | None
    data_hash: str
    created_date: datetime
    item_index: int | None = None  # which input record made it: its position in upsert_versions' input (sync-in: its message index)

    @property
    def event_id(self) -> str:
        return f"{self.entity_id}:{self.version_number}"


_LONG_DIGITS = re.compile(r"\d{19}")  # a number orjson may read as a float (beyond 64 bits)


def load_snapshot(text: str) -> Any:
    """A snapshot's JSON text as Python, exactly as the standard parser reads it. orjson
    first (sync-out reads one per record, and it is several times faster), except where it
    would differ: a number too long for 64 bits (it gives a float) is read by the standard
    parser, and so is what orjson refuses (NaN, a lone surrogate escape, from another producer)."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def snapshot_json(snapshot: Mapping[str, Any]) -> str:
    """The canonical text of a snapshot (what a change event carries)."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as Avro's timestamp-millis writes a datetime (fastavro:
    whole milliseconds, the rest dropped; a naive datetime is local time)."""
    if moment.tzinfo is not None:
        delta = moment - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


# -- change events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeEvent:
    entity_type: str
    entity_id: str
    version: int
    change_type: str  # create | update | delete
    origin_source: str
    origin_source_id: str
    priority: int
    snapshot: dict[str, Any]
    references: dict[str, str] = field(default_factory=dict)
    occurred_at_ms: int = 0
    trace_id: str | None = None
    # a forced resend (reconcile --heal, resync): the event_id is `entity_id:version/<resend id>`
    resend: str = ""
    changed_fields: tuple[str, ...] = ()

    @property
    def event_id(self) -> str:
        return f"{self.entity_id}:{self.version}"

    @property
    def changed_at_ms(self) -> int:
        """When the change happened, for the freshness metric: the snapshot's
        `source_updated_at` (the source's own modified time), else `occurred_at` (when sync-in
        committed the version: a pushed record without its own time was received just before)."""
        return source_time_ms(self.snapshot.get("source_updated_at")) or self.occurred_at_ms

    @classmethod
    def from_version(cls, version: NewVersion, resend: str = "") -> "ChangeEvent":
        """The change event of a committed version (what sync-in publishes)."""
        return cls(
            entity_type=version.entity_type,
            entity_id=version.entity_id,
            version=version.version_number,
            change_type=version.change_type,
            origin_source=version.source_system,
            origin_source_id=version.source_id,
            priority=version.priority,
            snapshot=version.snapshot,
            references={str(k): str(v) for k, v in version.references.items()},
            occurred_at_ms=epoch_ms(version.created_date),
            trace_id=version.trace_id,
            resend=resend,
            changed_fields=tuple(version.changed_fields),
        )

    def to_record(self) -> dict[str, Any]:
        """The codec's python form of io.syncflow.canonical.ChangeEvent
        (avro_schemas/canonical/ChangeEvent.avsc)."""
        return {
            "event_id": f"{self.event_id}/{self.resend}" if self.resend else self.event_id,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "version": self.version,
            "change_type": self.change_type,
            "origin_source": self.origin_source,
            "origin_source_id": self.origin_source_id,
            "priority": self.priority,
            "changed_fields": list(self.changed_fields),
            "snapshot": snapshot_json(self.snapshot),
            "references": dict(self.references),
            "occurred_at": EPOCH + timedelta(milliseconds=self.occurred_at_ms),
            "trace_id": self.trace_id,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ChangeEvent":
        """From the codec's python form of io.syncflow.canonical.ChangeEvent."""
        try:
            snapshot = load_snapshot(record["snapshot"]) if record.get("snapshot") else {}
        except (TypeError, ValueError) as exc:
            raise BadChangeEventError(f"snapshot of {record.get('event_id')} is not JSON: {exc}") from exc
        if not isinstance(snapshot, dict):
            raise BadChangeEventError(f"snapshot of {record.get('event_id')} is not a JSON object")
        occurred = record.get("occurred_at")
        occurred_ms = int(occurred.timestamp() * 1000) if isinstance(occurred, datetime) else int(occurred or 0)
        try:
            return cls(
                entity_type=str(record["entity_type"]),
                entity_id=str(record["entity_id"]),
                version=int(record["version"]),
                change_type=str(record["change_type"]),
                origin_source=str(record.get("origin_source") or ""),
                origin_source_id=str(record.get("origin_source_id") or ""),
                priority=int(record.get("priority") or 5),
                snapshot=snapshot,
                references={str(k): str(v) for k, v in (record.get("references") or {}).items() if v},
                occurred_at_ms=occurred_ms,
                trace_id=record.get("trace_id"),
                resend=resend_of(record),
                changed_fields=tuple(str(f) for f in record.get("changed_fields") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadChangeEventError(f"change event lacks a usable {exc}") from exc


def source_time_ms(value: Any) -> int:
    """A snapshot's time (ISO-8601 text as json_safe writes it, or epoch milliseconds) as
    epoch milliseconds; 0 when absent or unreadable."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else 0
    if not isinstance(value, str) or not value:
        return 0
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def resend_of(record: dict[str, Any]) -> str:
    """The resend id of a forced resend: its event_id is `<entity_id>:<version>/<resend id>`
    (the plain event_id, the targets' idempotency key, with a suffix), so the target applies
    the version again instead of answering from its idempotency store. "" for a plain event."""
    event_id = str(record.get("event_id") or "")
    plain = f"{record.get('entity_id')}:{record.get('version')}/"
    return event_id[len(plain):] if event_id.startswith(plain) else ""
