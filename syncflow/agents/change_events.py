"""Committed versions -> ChangeEvent records on `changes.<entity_type>` (Avro, keyed by the
canonical entity id, with the priority and trace id as headers). The record is
`syncflow.model.ChangeEvent.to_record()`, the form sync-out reads back with `from_record`."""

from __future__ import annotations

import json
from collections.abc import Callable

from syncflow.model import CHANGE_EVENT_SCHEMA, ChangeEvent, EntityRecord, NewVersion
from syncflow.streams.avro import AvroCodec
from syncflow.streams.headers import ENTITY_TYPE, PRIORITY, SOURCE_SYSTEM, TRACE_ID
from syncflow.streams.producer import OutgoingRecord


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
                value=codec.encode(CHANGE_EVENT_SCHEMA, ChangeEvent.from_version(version).to_record(), topic=topic),
                headers=change_event_headers(version),
            )
        )
    return out


EVENT_OVERHEAD = 1024  # fixed fields, Avro framing, headers and Kafka's record framing


def event_size_bound(record: EntityRecord, snapshot_bytes: int | None = None) -> int:
    """An upper bound of the bytes the change event of this record will take, known before
    its version is committed (a committed version must always fit its topic): the snapshot
    text (`snapshot_bytes`, the length of the entity as compact JSON, when the caller has
    it), every field name as a changed field, the references and identities."""
    if snapshot_bytes is None:
        snapshot_bytes = len(json.dumps(record.entity, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    fields = sum(len(str(k).encode()) + 5 for k in record.entity)
    refs = sum(len(str(k).encode()) + len(str(v).encode()) + 10 for k, v in record.references.items())
    ids = sum(len(x.encode()) for x in (record.entity_type, record.entity_id, record.source_system,
                                        record.source_id, record.trace_id or ""))
    return snapshot_bytes + fields + refs + 3 * ids + EVENT_OVERHEAD
