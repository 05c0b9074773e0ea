"""The change event as sync-out sees it: the decoded Avro record with its snapshot parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from syncflow.errors import BadInputError

CHANGE_EVENT_SCHEMA = "io.syncflow.canonical.ChangeEvent"


class BadChangeEventError(BadInputError):
    """A decoded change event sync-out cannot use (bad snapshot JSON, missing identity)."""

    category = "bad-change-event"


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
    def from_record(cls, record: dict[str, Any]) -> "ChangeEvent":
        """From the codec's python form of io.syncflow.canonical.ChangeEvent."""
        try:
            snapshot = json.loads(record["snapshot"]) if record.get("snapshot") else {}
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
