"""The pure part of sync-in: raw Kafka records in, raw documents, canonical records and
rejections out. No I/O here, so every routing decision unit-tests without services."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncflow.agents.change_events import event_size_bound
from syncflow.agents.rules import CanonicalRecord
from syncflow.errors import BadInputError, RawKeyError, TooLargeError, ValidationError
from syncflow.sinks.common_db.limits import entity_json, record_problems
from syncflow.model import EntityRecord, RawDocument, RawKey
from syncflow.streams.avro import DecodedRecord
from syncflow.streams.headers import BATCH_NUMBER, ENTITY_TYPE, TRACE_ID, header_value
from syncflow.streams.records import Headers, KafkaRecord
from syncflow.streams.topics import ENTITY_TYPES, SyncInTopics



@dataclass(frozen=True)
class Rejected:
    """A record that goes to the DLQ; `raw_key` is set when a raw document exists for it."""

    index: int
    error: BadInputError
    raw_key: RawKey | None = None


@dataclass(frozen=True)
class Accepted:
    """A record that passed every rule."""

    index: int
    raw_key: RawKey
    canonical: CanonicalRecord
    entity: EntityRecord


@dataclass
class PreparedBatch:
    """A batch decoded and transformed. One index runs through it: a record's position in
    the batch's messages (`Accepted.index`, `Rejected.index`, the keys of `raw_docs`, and
    `NewVersion.item_index` once the handler has committed the versions)."""

    raw_docs: dict[int, RawDocument] = field(default_factory=dict)  # message index -> its raw document
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def parse_key(key: bytes | None, headers: Headers) -> tuple[str, str]:
    """`<entity_type>:<source_id>` -> (entity_type, source_id); the entity-type header must agree."""
    if not key:
        raise RawKeyError("record has no key; expected '<entity_type>:<source_id>'")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RawKeyError(f"key is not UTF-8: {key[:60]!r}") from exc
    entity_type, sep, source_id = text.partition(":")
    if not sep or not entity_type or not source_id:
        raise RawKeyError(f"key {text[:200]!r} is not '<entity_type>:<source_id>'")
    if entity_type not in ENTITY_TYPES:
        raise RawKeyError(f"key {text[:200]!r} names unknown entity type {entity_type!r}")
    header_type = header_value(headers, ENTITY_TYPE)
    if header_type is not None and header_type != entity_type:
        raise RawKeyError(f"key says {entity_type!r} but header {ENTITY_TYPE} says {header_type!r}")
    return entity_type, source_id


def batch_number(headers: Headers) -> int | None:
    value = header_value(headers, BATCH_NUMBER)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def prepare_batch(
    messages: Sequence[KafkaRecord],
    topics: SyncInTopics,
    decode: Callable[[bytes, str], DecodedRecord],
    transform: Callable[[str, str, dict[str, Any]], CanonicalRecord],
    content_hash: Callable[[dict[str, Any]], str],
    *,
    max_event_bytes: int,
) -> PreparedBatch:
    """Decode, hash and transform every record. Bad keys and undecodable bytes are rejected
    without a raw document; a record that fails its rules, holds a value the common
    database cannot (`record_problems`), or would make a change event larger than
    `max_event_bytes` gets a raw document (so the raw store shows what arrived) and is
    rejected."""
    out = PreparedBatch()
    for index, msg in enumerate(messages):
        source = topics.raw.get(msg.topic)
        try:
            if source is None:
                raise RawKeyError(f"topic {msg.topic!r} is not a raw topic of this app")
            entity_type, source_id = parse_key(msg.key, msg.headers)
            if msg.value is None:
                raise RawKeyError("record has no value (tombstones are not a delete signal here)")
            decoded = decode(msg.value, msg.topic)
        except BadInputError as exc:
            out.rejected.append(Rejected(index, exc))
            continue
        raw_key = RawKey(source, entity_type, source_id)
        trace_id = header_value(msg.headers, TRACE_ID)
        out.raw_docs[index] = RawDocument(
            raw_key, decoded.record, content_hash(decoded.record), batch_number(msg.headers), trace_id
        )
        try:
            canonical = transform(source, entity_type, decoded.record)
        except BadInputError as exc:
            out.rejected.append(Rejected(index, exc, raw_key))
            continue
        entity = EntityRecord(
            entity_type=canonical.entity_type,
            entity_id=canonical.entity_id,
            entity=canonical.entity,
            data_hash=content_hash(canonical.entity),
            source_system=source,
            source_id=source_id,
            priority=canonical.priority,
            references=canonical.references,
            deleted=canonical.deleted,
            trace_id=trace_id,
        )
        try:
            check_fits(entity, max_event_bytes)
        except BadInputError as exc:
            out.rejected.append(Rejected(index, exc, raw_key))
            continue
        out.accepted.append(Accepted(index, raw_key, canonical, entity))
    return out


def check_fits(entity: EntityRecord, max_event_bytes: int) -> None:
    """Refuse, before the database, what the database or the changes topic cannot hold."""
    text = entity_json(entity.entity)  # one JSON pass for both checks
    if problems := record_problems(entity, text):
        raise ValidationError(problems)
    size = event_size_bound(entity, None if text is None else len(text))
    if size > max_event_bytes:
        raise TooLargeError(
            f"the change event of {entity.entity_type} {entity.entity_id[:100]} would take up to {size} bytes; "
            f"a record on the changes topics may take {max_event_bytes}", size, max_event_bytes)
