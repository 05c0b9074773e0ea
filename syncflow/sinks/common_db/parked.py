"""The common database's `parked_dependents` table (migration 0007): change events sync-out
parked in a target's DLQ because a reference never reached the target within the dependency
wait, kept with what they wait for, so that a reference that comes late still brings its
dependants along. Every sync-out worker of the target releases, every few seconds, the
rows whose references the target now holds (target_sync_state): the caller produces them to
the dependency lane, and only once the broker has them are the rows deleted, in the same
transaction that locked them (a crash in between releases them again; a second copy is a
stale version to sync-out). A row whose references never come stays until
`sync_out.parked_retention_days`; its record stays in the DLQ either way."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import LargeBinary, String

from syncflow.model import EntityKey

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class ParkedRecord:
    """One parked change event: its entity, what it waits for and the Kafka record to send again."""

    entity: EntityKey
    version: int
    waiting_for: tuple[EntityKey, ...]
    key: bytes | None
    value: bytes | None
    headers: Headers


def _headers_json(headers: Headers) -> list[list[str]]:
    return [[name, base64.b64encode(value).decode()] for name, value in headers]


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    """bytea as the Kafka client takes it (psycopg2 reads it as a memoryview)."""
    return None if value is None else bytes(value)


def _headers_of(rows: list[list[str]]) -> Headers:
    return [(name, base64.b64decode(value)) for name, value in rows]


_PARK = text("""
    INSERT INTO parked_dependents (target, entity_type, entity_id, version, waiting_for_types, waiting_for_ids,
                                   record_key, record_value, record_headers)
    VALUES (:target, :entity_type, :entity_id, :version, :types, :ids, :key, :value, :headers)
""").bindparams(bindparam("types", type_=ARRAY(String)), bindparam("ids", type_=ARRAY(String)),
                bindparam("key", type_=LargeBinary), bindparam("value", type_=LargeBinary),
                bindparam("headers", type_=JSONB))

# rows every reference of which the target holds now (a version delivered there)
_READY = text("""
    SELECT p.id, p.entity_type, p.entity_id, p.version, p.waiting_for_types, p.waiting_for_ids,
           p.record_key, p.record_value, p.record_headers
    FROM parked_dependents p
    WHERE p.target = :target
      AND NOT EXISTS (
        SELECT 1 FROM unnest(p.waiting_for_types, p.waiting_for_ids) AS w(entity_type, entity_id)
        WHERE NOT EXISTS (
          SELECT 1 FROM target_sync_state s
          WHERE s.target = p.target AND s.entity_type = w.entity_type AND s.entity_id = w.entity_id
            AND s.synced_version > 0))
    ORDER BY p.id
    LIMIT :limit
    FOR UPDATE OF p SKIP LOCKED
""")

_WAITING = text("SELECT count(*), extract(epoch FROM now() - min(parked_at)) FROM parked_dependents WHERE target = :target")
_DELETE = text("DELETE FROM parked_dependents WHERE id = ANY(:ids)")
_EXPIRE = text("DELETE FROM parked_dependents WHERE target = :target AND parked_at < :before")


def park(engine: Engine, target: str, records: Sequence[ParkedRecord]) -> None:
    """Remember records just parked in the target's DLQ (call once the broker has them there)."""
    if not records:
        return
    with engine.begin() as conn:
        conn.execute(_PARK, [{
            "target": target, "entity_type": r.entity[0], "entity_id": r.entity[1], "version": r.version,
            "types": [t for t, _ in r.waiting_for], "ids": [i for _, i in r.waiting_for],
            "key": r.key, "value": r.value, "headers": _headers_json(r.headers),
        } for r in records])


def release_ready(engine: Engine, target: str, send: Callable[[list[ParkedRecord]], None], limit: int = 500) -> int:
    """Hand the parked records whose references the target now holds to `send` (which must
    return only once the broker acknowledged them), then forget them. Returns how many."""
    with engine.begin() as conn:
        rows = conn.execute(_READY, {"target": target, "limit": limit}).all()
        if not rows:
            return 0
        send([ParkedRecord((r.entity_type, r.entity_id), r.version,
                           tuple(zip(r.waiting_for_types, r.waiting_for_ids, strict=True)),
                           _bytes(r.record_key), _bytes(r.record_value), _headers_of(r.record_headers)) for r in rows])
        conn.execute(_DELETE, {"ids": [r.id for r in rows]})
    return len(rows)


def expire(engine: Engine, target: str, before: datetime) -> int:
    """Stop waiting for references of records parked before `before` (they stay in the DLQ)."""
    with engine.begin() as conn:
        return conn.execute(_EXPIRE, {"target": target, "before": before}).rowcount



def waiting(engine: Engine, target: str) -> tuple[int, float | None]:
    """Records of `target` parked for a reference not yet there: how many, and the age in
    seconds of the oldest (None when none waits)."""
    with engine.connect() as conn:
        count, oldest = conn.execute(_WAITING, {"target": target}).one()
    return int(count), None if oldest is None else max(0.0, float(oldest))
