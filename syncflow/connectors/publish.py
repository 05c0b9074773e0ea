"""Source records -> raw.<source>: check against the source's schema, encode, key, add
the record headers, produce, and wait until the broker acknowledged every one. Shared by
the connectors, the push ingest API and bulk import."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncflow.connectors.schemas import check_record, load_schema, schema_name, source_id_of
from syncflow.errors import BadInputError, EncodeError, FieldError, ValidationError
from syncflow.streams import headers as h
from syncflow.streams.avro import AvroCodec, codec_for
from syncflow.streams.dead_letters import FailureContext, failure_headers
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, raw_key, raw_topic

Record = dict[str, Any]


def raw_topic_for(settings: Settings, source: str) -> str:
    """raw.<source>, unless the source's settings override it."""
    src = settings.connectors.sources.get(source)
    return src.topic if src is not None and src.topic else raw_topic(source)


def dlq_topic_for(settings: Settings) -> str:
    return settings.connectors.dlq_topic or SYNC_IN_DLQ


@dataclass
class Reject:
    """Something a source sent that cannot go on its raw topic, and why."""

    payload: bytes
    error: BadInputError
    entity_type: str
    source_id: str | None = None


@dataclass
class PublishResult:
    keys: list[str] = field(default_factory=list)
    rejected: int = 0
    rejected_by_category: Counter[str] = field(default_factory=Counter)


def new_batch_number() -> int:
    """One per extraction run: the run's start time in epoch milliseconds."""
    return int(time.time() * 1000)


class RawPublisher:
    """Builds and sends raw records of one source. Blocking (confluent-kafka): call it from
    a thread in async code."""

    def __init__(self, settings: Settings, source: str, producer: ReliableProducer,
                 codec: AvroCodec | None = None, *, topic: str | None = None, ack_timeout_s: float = 60.0):
        self.settings, self.source, self.producer = settings, source, producer
        self.codec = codec or codec_for(settings)
        self.topic = topic or raw_topic_for(settings, source)
        self.dlq_topic = dlq_topic_for(settings)
        self.ack_timeout_s = ack_timeout_s

    def record_headers(self, entity_type: str, batch_number: int) -> list[tuple[str, bytes]]:
        return [
            (h.SOURCE_SYSTEM, self.source.encode()),
            (h.ENTITY_TYPE, entity_type.encode()),
            (h.BATCH_NUMBER, str(batch_number).encode()),
            (h.EXTRACTION_TIME, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
            (h.TRACE_ID, uuid.uuid4().hex.encode()),
        ]

    def prepare(self, entity_type: str, record: object, batch_number: int) -> OutgoingRecord:
        """The Kafka record for one source record. Raises ValidationError (field errors)
        or EncodeError when it does not fit the source's schema."""
        schema = load_schema(self.settings.schemas_dir, self.source, entity_type)
        errors = check_record(schema, record)
        if errors:
            raise ValidationError(errors)
        assert isinstance(record, dict)
        source_id = source_id_of(self.source, entity_type, record)
        if not source_id.strip():
            raise ValidationError([FieldError("schema", "source id", source_id, "is empty")])
        value = self.codec.encode(schema_name(self.source, entity_type), record, topic=self.topic)
        return OutgoingRecord(self.topic, raw_key(entity_type, source_id).encode(), value,
                              self.record_headers(entity_type, batch_number))

    def dead_letter(self, reject: Reject, batch_number: int) -> OutgoingRecord:
        """A record that fits no schema goes to sync-in.dlq with its reason, never lost."""
        ctx = FailureContext(original_topic=self.topic, original_partition=-1, original_offset=-1,
                             original_timestamp_ms=int(time.time() * 1000),
                             consumer_group=f"connector.{self.source}", error=reject.error, rule="schema")
        key = raw_key(reject.entity_type, reject.source_id).encode() if reject.source_id else None
        return OutgoingRecord(self.dlq_topic, key, reject.payload,
                              self.record_headers(reject.entity_type, batch_number) + failure_headers(ctx))

    def publish(self, entity_type: str, records: list[Record], batch_number: int,
                rejects: list[Reject] | None = None) -> PublishResult:
        """Send records (and dead-letter what does not fit); returns once all are acknowledged.
        Raises DeliveryError when the broker did not take them."""
        result = PublishResult()
        outgoing: list[OutgoingRecord] = []
        dead = list(rejects or [])
        for record in records:
            try:
                out = self.prepare(entity_type, record, batch_number)
            except (ValidationError, EncodeError) as exc:
                dead.append(Reject(json.dumps(record, default=str).encode(), exc, entity_type,
                                   _maybe_source_id(self.source, entity_type, record)))
                continue
            outgoing.append(out)
            result.keys.append(out.key.decode())  # type: ignore[union-attr]
        outgoing += [self.dead_letter(r, batch_number) for r in dead]
        result.rejected = len(dead)
        result.rejected_by_category.update(r.error.category for r in dead)
        if outgoing:
            self.producer.send_all(outgoing, timeout=self.ack_timeout_s)
        return result


def _maybe_source_id(source: str, entity_type: str, record: object) -> str | None:
    try:
        return source_id_of(source, entity_type, record)  # type: ignore[arg-type]
    except (KeyError, TypeError):
        return None
