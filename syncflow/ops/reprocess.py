"""`raw reprocess`: send raw documents whose inbound processing failed back through sync-in,
after the cause was fixed (a rule, a reference that now exists). Their rawData is encoded
again with the source's native schema and produced to raw.<source>; sync-in treats it like
any record (and an unchanged hash changes nothing), so reprocessing twice is harmless.

Each document sent is set back to inbound "pending" so the next run does not send it again."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from syncflow.connectors.schemas import schema_name
from syncflow.sinks.raw_store import RawRecordStore
from syncflow.streams.headers import ENTITY_TYPE, EXTRACTION_TIME, SOURCE_SYSTEM, TRACE_ID
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.topics import raw_key, raw_topic

Encode = Callable[[str, dict, str], bytes]  # (schema name, record, topic) -> value bytes


@dataclass(frozen=True)
class ReprocessFilter:
    """Which failed documents to send; `since`/`until` bound metadata.syncDate (when the
    source last sent the record), `since` inclusive, `until` exclusive."""

    source: str | None = None
    entity_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class ReprocessResult:
    sent: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # could not be encoded

    def to_dict(self) -> dict[str, object]:
        return {"sent": len(self.sent), "failed": self.failed, "records": self.sent}


def to_outgoing(doc: dict[str, Any], encode: Encode, now: datetime, topic_for: Callable[[str], str] = raw_topic) -> OutgoingRecord:
    """The raw.<source> record for one raw document (as `RawRecordStore.find_failed` reads
    it: rawData unescaped), encoded with the source's native schema."""
    source, entity_type, source_id = doc["sourceSystem"], doc["entityType"], doc["sourceId"]
    topic = topic_for(source)
    value = encode(schema_name(source, entity_type), doc.get("rawData") or {}, topic)
    trace_id = (doc.get("metadata") or {}).get("traceId") or uuid.uuid4().hex
    headers = [
        (SOURCE_SYSTEM, source.encode()),
        (ENTITY_TYPE, entity_type.encode()),
        (TRACE_ID, str(trace_id).encode()),
        (EXTRACTION_TIME, now.isoformat().encode()),
    ]
    return OutgoingRecord(topic, raw_key(entity_type, source_id).encode(), value, headers)


def reprocess(
    store: RawRecordStore,
    producer: ReliableProducer,
    encode: Encode,
    flt: ReprocessFilter,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    batch: int = 200,
    topic_for: Callable[[str], str] = raw_topic,
) -> ReprocessResult:
    """Produce every matching failed document; mark the ones the broker took as pending.
    `topic_for` maps a source to its topic (raw.<source>; tests give their own)."""
    result = ReprocessResult()
    now = datetime.now(timezone.utc)
    pending: list[tuple[dict[str, Any], OutgoingRecord]] = []

    def flush() -> None:
        if not dry_run:
            producer.send_all([rec for _, rec in pending])
            store.mark_failed_pending([doc["_id"] for doc, _ in pending], now)
        result.sent += [_describe(doc, rec) for doc, rec in pending]
        pending.clear()

    for doc in store.find_failed(flt.source, flt.entity_type, flt.since, flt.until, limit):
        try:
            pending.append((doc, to_outgoing(doc, encode, now, topic_for)))
        except Exception as exc:  # noqa: BLE001 - one bad document is reported, the rest go on
            result.failed.append({**_ids(doc), "error": f"{type(exc).__name__}: {exc}"})
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return result


def _ids(doc: dict[str, Any]) -> dict[str, str]:
    return {"source": str(doc.get("sourceSystem")), "entity_type": str(doc.get("entityType")), "source_id": str(doc.get("sourceId"))}


def _describe(doc: dict[str, Any], rec: OutgoingRecord) -> dict[str, str]:
    return {**_ids(doc), "topic": rec.topic, "key": (rec.key or b"").decode()}
