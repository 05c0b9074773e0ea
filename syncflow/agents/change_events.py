"""Committed versions -> ChangeEvent records on `changes.<entity_type>` (Avro, keyed by the
canonical entity id, with the priority and trace id as headers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from syncflow.sinks.common_db.repository import NewVersion
from syncflow.sinks.common_db.versioning import EntityRecord, snapshot_json
from syncflow.streams.avro import AvroCodec
from syncflow.streams.headers import ENTITY_TYPE, PRIORITY, SOURCE_SYSTEM, TRACE_ID
from syncflow.streams.producer import OutgoingRecord

CHANGE_EVENT_SCHEMA = "io.syncflow.canonical.ChangeEvent"


def change_event(version: NewVersion) -> dict[str, Any]:
    """The ChangeEvent record of one version (see avro_schemas/canonical/ChangeEvent.avsc)."""
    return {
        "event_id": version.event_id,
        "entity_type": version.entity_type,
        "entity_id": version.entity_id,
        "version": version.version_number,
        "change_type": version.change_type,
        "origin_source": version.source_system,
        "origin_source_id": version.source_id,
        "priority": version.priority,
        "changed_fields": list(version.changed_fields),
        "snapshot": snapshot_json(version.snapshot),
        "references": {str(k): str(v) for k, v in version.references.items()},
        "occurred_at": version.created_date,
        "trace_id": version.trace_id,
    }


def change_event_headers(version: NewVersion) -> list[tuple[str, bytes]]:
    headers = [
        (PRIORITY, str(version.priority).encode()),
        (ENTITY_TYPE, version.entity_type.encode()),
        (SOURCE_SYSTEM, version.source_system.encode()),
    ]
    if version.trace_id:
        headers.append((TRACE_ID, version.trace_id.encode()))
    return headers


def change_records(
    versions: list[NewVersion], codec: AvroCodec, topic_for: Callable[[str], str]
) -> list[OutgoingRecord]:
    """One outgoing Kafka record per version, in the order given."""
    out = []
    for version in versions:
        topic = topic_for(version.entity_type)
        out.append(
            OutgoingRecord(
                topic=topic,
                key=version.entity_id.encode(),
                value=codec.encode(CHANGE_EVENT_SCHEMA, change_event(version), topic=topic),
                headers=change_event_headers(version),
            )
        )
    return out


EVENT_OVERHEAD = 1024  # fixed fields, Avro framing, headers and Kafka's record framing


def event_size_bound(record: EntityRecord) -> int:
    """An upper bound of the bytes the change event of this record will take, known before
    its version is committed (a committed version must always fit its topic): the snapshot
    text, every field name as a changed field, the references and identities."""
    snapshot = json.dumps(record.entity, ensure_ascii=False, separators=(",", ":"), default=str)
    fields = sum(len(str(k).encode()) + 5 for k in record.entity)
    refs = sum(len(str(k).encode()) + len(str(v).encode()) + 10 for k, v in record.references.items())
    ids = sum(len(x.encode()) for x in (record.entity_type, record.entity_id, record.source_system,
                                        record.source_id, record.trace_id or ""))
    return len(snapshot.encode()) + fields + refs + 3 * ids + EVENT_OVERHEAD
