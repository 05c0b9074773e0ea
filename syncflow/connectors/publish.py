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

from confluent_kafka import KafkaError

from syncflow.connectors.schemas import check_record, load_schema, schema_name, source_id_of
from syncflow.errors import (
    BadInputError,
    EncodeError,
    FieldError,
    NotAcknowledgedError,
    TooLargeError,
    ValidationError,
)
from syncflow.streams import headers as h
from syncflow.streams.avro import AvroCodec, codec_for
from syncflow.streams.dead_letters import PREFIX, FailureContext, failure_headers, record_size
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, raw_key, raw_topic

Record = dict[str, Any]

DEAD_LETTER_KEY_MAX = 1024  # bytes of a dead letter's key; longer keys (absurd source ids) are cut


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


def refused_as_too_large(exc: NotAcknowledgedError) -> bool:
    """True when every record the broker did not take was refused for its size (a permanent
    answer about those records, not a broker outage)."""
    return all(err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE for _, err in exc.failures)


def record_payload(record: object) -> bytes:
    """What a dead letter carries of a record that could not be published: its JSON (a
    placeholder naming its type when even that cannot be written, e.g. absurdly deep)."""
    try:
        return json.dumps(record, default=str).encode("utf-8", "backslashreplace")
    except (ValueError, TypeError, RecursionError):
        return json.dumps({"unserializable": type(record).__name__}).encode()


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

    def record_headers(self, entity_type: str, batch_number: int, trace_id: str | None = None) -> list[tuple[str, bytes]]:
        """The raw record's headers; its trace id is the one the source sent, else a new one
        (each record gets its own: it is followed alone from here to every target)."""
        return [
            (h.SOURCE_SYSTEM, self.source.encode()),
            (h.ENTITY_TYPE, entity_type.encode()),
            (h.BATCH_NUMBER, str(batch_number).encode()),
            (h.EXTRACTION_TIME, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
            (h.TRACE_ID, (trace_id or uuid.uuid4().hex).encode()),
        ]

    def prepare(self, entity_type: str, record: object, batch_number: int, trace_id: str | None = None) -> OutgoingRecord:
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
        try:
            key = raw_key(entity_type, source_id).encode()
        except UnicodeEncodeError as exc:
            raise ValidationError([FieldError("schema", "source id", source_id,
                                              f"is not valid text: {exc.reason}")]) from exc
        value = self.codec.encode(schema_name(self.source, entity_type), record, topic=self.topic)
        out = OutgoingRecord(self.topic, key, value, self.record_headers(entity_type, batch_number, trace_id))
        size, limit = record_size(out.key, out.value, out.headers), self.settings.kafka_max_message_bytes
        if size > limit:
            raise TooLargeError(f"{schema_name(self.source, entity_type)} {source_id[:200]!r}: {size} bytes "
                                f"encoded, over the {limit}-byte limit of one record on {self.topic}", size, limit)
        return out

    def dead_letter(self, reject: Reject, batch_number: int) -> OutgoingRecord:
        """A record that cannot go on the raw topic goes to sync-in.dlq with its reason, never
        lost. Its payload is cut to half the largest message (a too-large record would not fit
        the DLQ either; the headers say how big it was), its key to DEAD_LETTER_KEY_MAX bytes."""
        ctx = FailureContext(original_topic=self.topic, original_partition=-1, original_offset=-1,
                             original_timestamp_ms=int(time.time() * 1000),
                             consumer_group=f"connector.{self.source}", error=reject.error,
                             rule="size" if isinstance(reject.error, TooLargeError) else "schema")
        key = None
        if reject.source_id:
            key = raw_key(reject.entity_type, reject.source_id).encode("utf-8", "backslashreplace")
            key = key[:DEAD_LETTER_KEY_MAX]
        headers = self.record_headers(reject.entity_type, batch_number) + failure_headers(ctx)
        payload, room = reject.payload, self.settings.kafka_max_message_bytes // 2
        if len(payload) > room:
            headers.append((PREFIX + "payload.truncated", f"{len(payload)} bytes, first {room} kept".encode()))
            payload = payload[:room]
        return OutgoingRecord(self.dlq_topic, key, payload, headers)

    def publish(self, entity_type: str, records: list[Record], batch_number: int,
                rejects: list[Reject] | None = None) -> PublishResult:
        """Send records and dead-letter what cannot go on the raw topic (does not fit the
        schema, too large, refused by the broker as too large); returns once all are
        acknowledged, so one bad record never holds up the others. Raises NotAcknowledgedError
        when the broker did not take them for any other reason."""
        result = PublishResult()
        prepared: list[tuple[OutgoingRecord, Record]] = []
        dead = list(rejects or [])
        for record in records:
            try:
                prepared.append((self.prepare(entity_type, record, batch_number), record))
            except (ValidationError, EncodeError, TooLargeError) as exc:
                dead.append(Reject(record_payload(record), exc, entity_type,
                                   _maybe_source_id(self.source, entity_type, record)))
        refused = self.send_raw(prepared, entity_type)
        result.keys = [out.key.decode() for out, _ in prepared if id(out) not in refused]  # type: ignore[union-attr]
        dead += refused.values()
        result.rejected = len(dead)
        result.rejected_by_category.update(r.error.category for r in dead)
        if dead:
            self.producer.send_all([self.dead_letter(r, batch_number) for r in dead], timeout=self.ack_timeout_s)
        return result

    def send_raw(self, prepared: list[tuple[OutgoingRecord, Record]], entity_type: str) -> dict[int, Reject]:
        """Produce and wait for the acknowledgements. The broker refuses a whole batch when one
        record in it is over the topic's limit, so the refused records are sent again one by
        one: those refused alone are returned as rejects (by id of their OutgoingRecord)."""
        if not prepared:
            return {}
        try:
            self.producer.send_all([out for out, _ in prepared], timeout=self.ack_timeout_s)
            return {}
        except NotAcknowledgedError as exc:
            if not refused_as_too_large(exc):
                raise
            failed = {id(out) for out, _ in exc.failures}
        refused: dict[int, Reject] = {}
        for out, record in prepared:
            if id(out) not in failed:
                continue
            try:
                self.producer.send_all([out], timeout=self.ack_timeout_s)
            except NotAcknowledgedError as exc:
                if not refused_as_too_large(exc):
                    raise
                size = record_size(out.key, out.value, out.headers)
                error = TooLargeError(f"{(out.key or b'').decode(errors='replace')[:200]}: {size} bytes, refused by "
                                      f"the broker as too large for {out.topic}", size, self.settings.kafka_max_message_bytes)
                refused[id(out)] = Reject(record_payload(record), error, entity_type,
                                          _maybe_source_id(self.source, entity_type, record))
        return refused


def _maybe_source_id(source: str, entity_type: str, record: object) -> str | None:
    try:
        return source_id_of(source, entity_type, record)  # type: ignore[arg-type]
    except (KeyError, TypeError):
        return None
