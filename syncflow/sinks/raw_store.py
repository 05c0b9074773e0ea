"""The raw store (MongoDB, collection `client_raw_data`): the latest record each source sent
per (sourceSystem, entityType, sourceId), and what became of it.

Written to the common subset of MongoDB and FerretDB v1: no transactions, no TTL index
required (used where the server has it; `purge_expired` works everywhere), and payload keys
escaped because FerretDB refuses keys containing '.' or starting with '$'. Every write is one
bulk_write per batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Binary
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure

from syncflow.errors import FieldError, RawDocumentRejected
from syncflow.streams.settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "client_raw_data"
PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
_DOT, _DOLLAR, _ESC = "\uff0e", "\uff04", "\uff3c"  # full-width '.', '$', '\\'
_NESTED = "\uff3b\uff3d"  # full-width '[]': the key that wraps a nested array


# -- key escaping (plain functions) ------------------------------------------------------


def escape_key(key: str) -> str:
    """'.' anywhere and '$' at the start become full-width look-alikes; a literal look-alike
    (or the escape character itself) is prefixed with '＼', so `unescape_key` is exact."""
    if key == _NESTED:
        return _ESC + key
    out = []
    for i, ch in enumerate(key):
        if ch == ".":
            out.append(_DOT)
        elif ch == "$" and i == 0:
            out.append(_DOLLAR)
        elif ch in (_ESC, _DOT) or (ch == _DOLLAR and i == 0):
            out.append(_ESC + ch)
        else:
            out.append(ch)
    return "".join(out)


def unescape_key(key: str) -> str:
    if _DOT not in key and _ESC not in key and not key.startswith(_DOLLAR):
        return key
    out, i = [], 0
    while i < len(key):
        ch = key[i]
        if ch == _ESC and i + 1 < len(key):
            out.append(key[i + 1])
            i += 2
            continue
        out.append("." if ch == _DOT else "$" if (ch == _DOLLAR and i == 0) else ch)
        i += 1
    return "".join(out)


def to_document(value: Any) -> Any:
    """A BSON-safe copy of a decoded record: escaped keys, dates as ISO text, Decimals as
    text, non-finite floats as text, nested arrays wrapped (FerretDB refuses them)."""
    if isinstance(value, Mapping):
        return {escape_key(str(k)): to_document(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [{_NESTED: to_document(v)} if isinstance(v, (list, tuple)) else to_document(v) for v in value]
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Binary(bytes(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def from_document(value: Any) -> Any:
    """Undo the key escaping and the nested-array wrapping of `to_document`."""
    if isinstance(value, Mapping):
        if len(value) == 1 and _NESTED in value:
            return from_document(value[_NESTED])
        return {unescape_key(k): from_document(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_document(v) for v in value]
    if isinstance(value, Binary):
        return bytes(value)
    return value


# -- the store ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Completed:
    key: RawKey
    processed_data: Mapping[str, Any]
    version: int | None = None  # the common-database version it made (None: unchanged)


@dataclass(frozen=True)
class Failed:
    key: RawKey
    error: str
    field_errors: list[FieldError] = field(default_factory=list)
    retry_count: int = 0


@dataclass(frozen=True)
class UpsertResult:
    written: int
    rejected: dict[int, RawDocumentRejected]  # index in the batch -> why


class RawRecordStore:
    """Bulk writes of raw records and their inbound/outbound status."""

    def __init__(self, settings: Settings, client: MongoClient | None = None):
        # socketTimeoutMS: a server that stops answering mid-write must raise (and the batch be
        # retried), not hang the worker forever
        self._client = client or MongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=5000, socketTimeoutMS=120_000, tz_aware=True
        )
        self._owns_client = client is None
        self._retention = timedelta(days=settings.raw_retention_days)
        self.collection: Collection = self._client[settings.mongo_database][COLLECTION]
        self.ttl_supported: bool | None = None

    @property
    def client(self) -> MongoClient:
        return self._client

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def ping(self) -> None:
        self._client.admin.command("ping")

    def ensure_indexes(self) -> None:
        """The unique identity, the hash lookup, and a TTL index where the server has one."""
        self.collection.create_index(
            [("sourceSystem", ASCENDING), ("entityType", ASCENDING), ("sourceId", ASCENDING)],
            unique=True,
            name="uq_source_entity_id",
        )
        self.collection.create_index([("metadata.hash", ASCENDING)], name="ix_hash")
        self.collection.create_index([("syncStatus.inbound", ASCENDING)], name="ix_inbound")
        try:
            self.collection.create_index([("expiresAfter", ASCENDING)], expireAfterSeconds=0, name="ttl_expires")
            self.ttl_supported = True
        except OperationFailure as exc:
            log.info("raw store: no TTL index on this server (%s); purge_expired keeps retention", exc.code)
            self.ttl_supported = False
            self.collection.create_index([("expiresAfter", ASCENDING)], name="ix_expires")

    def upsert_raw_many(self, docs: Sequence[RawDocument], now: datetime | None = None) -> UpsertResult:
        """Store the latest raw record per identity (inbound: pending). Documents the server
        refuses are reported by index; the others are written."""
        if not docs:
            return UpsertResult(0, {})
        now = now or datetime.now(UTC)
        ops = [
            UpdateOne(
                d.key.filter(),
                {
                    "$set": {
                        "rawData": to_document(d.raw_data),
                        "metadata.batchNumber": d.batch_number,
                        "metadata.syncDate": now,
                        "metadata.hash": d.hash,
                        "metadata.traceId": d.trace_id,
                        "syncStatus.inbound": PENDING,
                        "expiresAfter": now + self._retention,
                    },
                    "$setOnInsert": {**d.key.fields(), "createDate": now, "syncStatus.outbound": {}},
                    # FerretDB drops an empty array from $setOnInsert; an empty $push creates it
                    "$push": {"errorLog": {"$each": []}},
                },
                upsert=True,
            )
            for d in docs
        ]
        return self._bulk(ops)

    def mark_completed_many(self, items: Sequence[Completed]) -> None:
        ops = []
        for item in items:
            update: dict[str, Any] = {"syncStatus.inbound": COMPLETED, "processedData": to_document(item.processed_data)}
            if item.version is not None:
                update["metadata.version"] = item.version
            ops.append(UpdateOne(item.key.filter(), {"$set": update}))
        self._bulk(ops, raise_rejected=True)

    def mark_failed_many(self, items: Sequence[Failed], now: datetime | None = None) -> None:
        """Inbound failed, with the error and each failing rule appended to errorLog."""
        now = now or datetime.now(UTC)
        ops = []
        for item in items:
            entry = {
                "timestamp": now,
                "error": item.error,
                "retryCount": item.retry_count,
                "fieldErrors": to_document([e.to_dict() for e in item.field_errors]),
            }
            ops.append(
                UpdateOne(
                    item.key.filter(),
                    {"$set": {"syncStatus.inbound": FAILED}, "$push": {"errorLog": {"$each": [entry]}}},
                )
            )
        self._bulk(ops, raise_rejected=True)

    def set_outbound_statuses(self, items: Sequence[tuple[str, str, str, str, str]]) -> None:
        """(source_system, entity_type, source_id, target, status) per item, for sync-out."""
        ops = [
            UpdateOne(RawKey(s, e, i).filter(), {"$set": {f"syncStatus.outbound.{escape_key(target)}": status}})
            for s, e, i, target, status in items
        ]
        self._bulk(ops, raise_rejected=True)

    def find_failed(self, filter: Mapping[str, Any] | None = None, batch_size: int = 500) -> Iterator[dict[str, Any]]:
        """Failed raw documents (for reprocessing), rawData unescaped."""
        query = {**(filter or {}), "syncStatus.inbound": FAILED}
        for doc in self.collection.find(query, batch_size=batch_size).sort("_id", ASCENDING):
            doc["rawData"] = from_document(doc.get("rawData") or {})
            yield doc

    def find_one(self, key: RawKey) -> dict[str, Any] | None:
        doc = self.collection.find_one(key.filter())
        if doc is not None:
            doc["rawData"] = from_document(doc.get("rawData") or {})
        return doc

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete documents past expiresAfter; works on any MongoDB-compatible server."""
        result = self.collection.delete_many({"expiresAfter": {"$lte": now or datetime.now(UTC)}})
        return int(result.deleted_count)

    def _bulk(self, ops: list[UpdateOne], raise_rejected: bool = False) -> UpsertResult:
        if not ops:
            return UpsertResult(0, {})
        try:
            result = self.collection.bulk_write(ops, ordered=False)
            return UpsertResult(result.upserted_count + result.modified_count + result.matched_count, {})
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or not errors:
                raise
            rejected = {
                int(e["index"]): RawDocumentRejected(f"raw store refused the document: {e.get('errmsg', e)}")
                for e in errors
            }
            if raise_rejected:
                raise next(iter(rejected.values())) from exc
            return UpsertResult(len(ops) - len(rejected), rejected)
