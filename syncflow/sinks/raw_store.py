"""The raw store (MongoDB, collection `client_raw_data`): the latest record each source sent
per (sourceSystem, entityType, sourceId), and what became of it.

Written to the common subset of MongoDB and FerretDB v1: no transactions, no TTL index
required (used where the server has it; `syncflow raw purge`, ops/raw_purge.py, works everywhere), and payload keys
escaped because FerretDB refuses keys containing '.' or starting with '$'. Every write is one
bulk_write per batch."""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DeleteOne, MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure

from syncflow.errors import FieldError, RawDocumentRejected
from syncflow.model import RawDocument, RawKey
from syncflow.settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "client_raw_data"
DUPLICATE_KEY = 11000  # server error code
PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
_DOT, _DOLLAR, _ESC = "\uff0e", "\uff04", "\uff3c"  # full-width '.', '$', '\\'
_NESTED = "\uff3b\uff3d"  # full-width '[]': the key that wraps a nested array


# -- key escaping (plain functions) ------------------------------------------------------


def escape_key(key: str) -> str:
    """'.' anywhere and '$' at the start become full-width look-alikes; a literal look-alike
    (or the escape character itself) is prefixed with '＼', so `unescape_key` is exact."""
    if "." not in key and _ESC not in key and _DOT not in key and key[:1] not in ("$", _DOLLAR) and key != _NESTED:
        return key  # the common case: nothing to escape
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
    kind = type(value)  # the plain JSON-like types first: most of a payload
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {escape_key(k if type(k) is str else str(k)): to_document(v) for k, v in value.items()}
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
class Completed:
    key: RawKey
    processed_data: Mapping[str, Any]
    version: int | None = None  # the common-database version it made (None: unchanged)


@dataclass(frozen=True)
class RawFailed:
    key: RawKey
    error: str
    field_errors: list[FieldError] = field(default_factory=list)
    retry_count: int = 0


Outcome = Completed | RawFailed


def _apply_outcome(doc: dict[str, Any], outcome: Outcome, now: datetime) -> None:
    """Record in a raw document what became of its record."""
    sync = doc["syncStatus"] = dict(doc.get("syncStatus") or {})
    if isinstance(outcome, Completed):
        sync["inbound"] = COMPLETED
        doc["processedData"] = to_document(outcome.processed_data)
        if outcome.version is not None:  # a new version: every target has yet to get it
            doc["metadata"] = {**(doc.get("metadata") or {}), "version": outcome.version}
            sync["outbound"] = {target: PENDING for target in sync.get("outbound") or {}}
        return
    sync["inbound"] = FAILED
    doc["errorLog"] = list(doc.get("errorLog") or []) + [{
        "timestamp": now,
        "error": outcome.error,
        "retryCount": outcome.retry_count,
        "fieldErrors": to_document([e.to_dict() for e in outcome.field_errors]),
    }]


def _refusals(exc: BulkWriteError, docs: list[dict[str, Any]]) -> dict[str, RawDocumentRejected]:
    """The documents a bulk write refused, by _id; raises when the server did not answer for each."""
    errors = exc.details.get("writeErrors", [])
    if exc.details.get("writeConcernErrors") or not errors:
        raise exc
    return {
        docs[int(e["index"])]["_id"]: RawDocumentRejected(f"raw store refused the document: {e.get('errmsg', e)}")
        for e in errors
    }


@dataclass(frozen=True)
class UpsertResult:
    written: int
    rejected: dict[int, RawDocumentRejected]  # index in the batch -> why


class RawRecordStore:
    """Bulk writes of raw records and their inbound/outbound status."""

    def __init__(self, settings: Settings, client: MongoClient | None = None):
        self._client = client or MongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=5000,
            socketTimeoutMS=int(settings.mongo_socket_timeout_s * 1000), tz_aware=True,
        )
        self._owns_client = client is None
        self._retention = timedelta(days=settings.raw_retention_days)
        self.collection: Collection = self._client[settings.mongo_database][COLLECTION]
        self.ttl_supported: bool | None = None
        # documents deleted for a rewrite whose insert did not go through: written first thing
        # on the next call, so a retried step finds them (collection name -> _id -> document)
        self._unwritten: dict[str, dict[str, dict[str, Any]]] = {}
        self._known: set[str] = set()  # ids of documents this store has written (a hint, see _rewrite)
        self._known_max = settings.mongo_known_ids_max
        self._read_concurrency = settings.mongo_read_concurrency
        self._readers: ThreadPoolExecutor | None = None

    @property
    def client(self) -> MongoClient:
        return self._client

    def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=False)
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
            log.info("raw store: no TTL index on this server (%s); `syncflow raw purge` keeps retention", exc.code)
            self.ttl_supported = False
            self.collection.create_index([("expiresAfter", ASCENDING)], name="ix_expires")

    def upsert_raw_many(self, docs: Sequence[RawDocument], now: datetime | None = None,
                        outcomes: Sequence[Outcome | None] | None = None) -> UpsertResult:
        """Store the latest raw record per identity, keeping the document's history
        (createDate, errorLog, outbound statuses). `outcomes[i]` is what became of `docs[i]`
        (completed or failed; inbound stays pending without one), so sync-in writes each
        document once per batch. Documents the server refuses are reported by index; the
        others are written."""
        now = now or datetime.now(UTC)
        latest = {d.key.doc_id: d for d in docs}  # the last record of a key in the batch wins
        results: dict[str, list[Outcome]] = {}
        for d, outcome in zip(docs, outcomes or [None] * len(docs), strict=True):
            if outcome is not None:
                results.setdefault(d.key.doc_id, []).append(outcome)

        def change(doc_id: str, old: dict[str, Any] | None) -> dict[str, Any]:
            d = latest[doc_id]
            old = old or {}
            doc = {
                "_id": doc_id,
                **d.key.fields(),
                "rawData": to_document(d.raw_data),
                "processedData": old.get("processedData"),
                "metadata": {**(old.get("metadata") or {}), "batchNumber": d.batch_number, "syncDate": now,
                             "hash": d.hash, "traceId": d.trace_id},
                "syncStatus": {"inbound": PENDING, "outbound": (old.get("syncStatus") or {}).get("outbound") or {}},
                "errorLog": old.get("errorLog") or [],
                "createDate": old.get("createDate") or now,
                "expiresAfter": now + self._retention,
            }
            for outcome in results.get(doc_id, []):
                _apply_outcome(doc, outcome, now)
            return doc

        rejected_ids = self._rewrite(list(latest), change)
        rejected = {i: rejected_ids[d.key.doc_id] for i, d in enumerate(docs) if d.key.doc_id in rejected_ids}
        return UpsertResult(len(docs) - len(rejected), rejected)

    def _rewrite(self, doc_ids: list[str],
                 change: Callable[[str, dict[str, Any] | None], dict[str, Any]]) -> dict[str, RawDocumentRejected]:
        """Write whole documents; returns the ones the server refused.

        FerretDB v1 updates documents one by one (and stops answering an update command with
        many statements), pushes down only a filter on one _id, and falls back to inserting
        document by document when one insert of a bulk fails. So: identities not seen before
        go in one insert_many (the fast path: a sync-in load is mostly new identities); the
        ones that exist are read with a find per _id, deleted by _id and inserted again
        (`_replace`). This works on any MongoDB-compatible server."""
        if not doc_ids:
            return {}
        self._write_unwritten(self.collection)
        existing = [i for i in doc_ids if i in self._known]
        reading = self._start_reads(existing)  # the server answers them while it inserts the rest
        fresh = [i for i in doc_ids if i not in self._known]
        # known before the insert: when its answer is lost (a timeout), the retry reads these
        # instead of inserting them again (FerretDB inserts a bulk with a duplicate one by one)
        self._remember(fresh)
        duplicates, refused = self._insert_new(self.collection, [change(i, None) for i in fresh])
        old = self._finish_reads(reading) | self._finish_reads(self._start_reads(list(duplicates)))
        existing += [i for i in fresh if i in duplicates]
        docs = [change(i, old.get(i)) for i in existing]
        try:
            self._replace(self.collection, docs)
        except BulkWriteError as exc:
            refused.update(_refusals(exc, docs))
        self._remember(d["_id"] for d in docs if d["_id"] not in refused)
        return refused

    def _insert_new(self, collection: Collection, docs: list[dict[str, Any]]
                    ) -> tuple[set[str], dict[str, RawDocumentRejected]]:
        """Insert documents believed new: (ids that exist already, ids refused)."""
        if not docs:
            return set(), {}
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            duplicates = {docs[int(e["index"])]["_id"] for e in exc.details.get("writeErrors", [])
                          if e.get("code") == DUPLICATE_KEY}
            refused = _refusals(exc, docs)
            return duplicates, {i: r for i, r in refused.items() if i not in duplicates}
        return set(), {}

    def _remember(self, doc_ids: Iterable[str]) -> None:
        if len(self._known) > self._known_max:
            self._known.clear()  # a hint only: a forgotten id costs one refused insert
        self._known.update(doc_ids)

    def _start_reads(self, doc_ids: list[str]) -> list[Future[dict[str, Any] | None]]:
        """A find per _id, on `mongo_read_concurrency` connections at once (each find is a
        round trip; FerretDB pushes down only a filter on one _id)."""
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max(self._read_concurrency, 1), thread_name_prefix="raw-store-read")
        collection = self.collection
        return [self._readers.submit(collection.find_one, {"_id": doc_id}) for doc_id in doc_ids]

    @staticmethod
    def _finish_reads(reads: list[Future[dict[str, Any] | None]]) -> dict[str, dict[str, Any]]:
        found = (f.result() for f in reads)
        return {doc["_id"]: doc for doc in found if doc is not None}

    def _replace(self, collection: Collection, docs: list[dict[str, Any]]) -> None:
        """Delete then insert by _id. Until the insert is known to have gone through, the
        documents are kept here: a connection lost between the two would otherwise lose them
        (the retried step reads, finds nothing, and writes nothing)."""
        self._write_unwritten(collection)
        if not docs:
            return
        self._unwritten[collection.name] = {d["_id"]: d for d in docs}
        collection.bulk_write([DeleteOne({"_id": d["_id"]}) for d in docs], ordered=False)
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError:
            self._unwritten.pop(collection.name, None)  # the server answered: refused ones are reported
            raise
        self._unwritten.pop(collection.name, None)

    def _write_unwritten(self, collection: Collection) -> None:
        docs = list(self._unwritten.get(collection.name, {}).values())
        if not docs:
            return
        # the interrupted insert may have gone through in part or whole: insert only what is
        # missing (FerretDB inserts a bulk with a duplicate one by one, slowly enough to time out again)
        there = self._finish_reads(self._start_reads([d["_id"] for d in docs]))
        docs = [d for d in docs if d["_id"] not in there]
        if not docs:
            self._unwritten.pop(collection.name, None)
            return
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            refused = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
            if exc.details.get("writeConcernErrors"):
                raise
            for e in refused:  # the first try was refused as well and reported then
                log.warning("raw store: re-insert of %s refused: %s", docs[int(e["index"])]["_id"], e.get("errmsg", e))
        self._unwritten.pop(collection.name, None)
        log.info("raw store: wrote %d document(s) whose first insert was interrupted", len(docs))

    def set_outbound_statuses(self, items: Sequence[tuple[str, str, str, str, str]]) -> None:
        """(source_system, entity_type, source_id, target, status) per item, for sync-out:
        `syncStatus.outbound.<target>` of each raw document in `client_raw_data`, so a plain
        query reads it. One `$set` per document (FerretDB v1 stops answering update commands
        with many statements and pushes down only a filter on one _id), sent on
        `mongo_read_concurrency` connections at once. A document sync-in is rewriting at that
        moment may miss one status: sync-out writes behind (raw_status.py), and the common
        database's `entity_sync_status` is the truth."""
        latest: dict[str, dict[str, str]] = {}
        for s, e, i, target, status in items:
            latest.setdefault(RawKey(s, e, i).doc_id, {})[f"syncStatus.outbound.{escape_key(target)}"] = status
        if not latest:
            return
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max(self._read_concurrency, 1), thread_name_prefix="raw-store-read")
        collection = self.collection
        updates = [self._readers.submit(collection.update_one, {"_id": doc_id}, {"$set": fields})
                   for doc_id, fields in latest.items()]
        for update in updates:
            update.result()

    def find_one(self, key: RawKey) -> dict[str, Any] | None:
        doc = self.collection.find_one(key.filter())
        if doc is not None:
            doc["rawData"] = from_document(doc.get("rawData") or {})
        return doc

    def find_by_trace_id(self, trace_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Raw documents whose latest record came with this trace id (`syncflow trace`; not
        indexed: a scan on FerretDB, for an operator's one-off question)."""
        docs = list(self.collection.find({"metadata.traceId": trace_id}, limit=limit))
        for doc in docs:
            doc["rawData"] = from_document(doc.get("rawData") or {})
        return docs


    # -- the operations' queries: `syncflow raw reprocess` and `syncflow raw purge` ----------

    def find_failed(self, source: str | None = None, entity_type: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int | None = None) -> Iterable[dict[str, Any]]:
        """Documents whose inbound processing failed, in _id order, rawData unescaped.
        `since` (inclusive) and `until` (exclusive) bound `metadata.syncDate`, when the
        source last sent the record."""
        query: dict[str, Any] = {"syncStatus.inbound": FAILED}
        if source:
            query["sourceSystem"] = source
        if entity_type:
            query["entityType"] = entity_type
        sent: dict[str, datetime] = {}
        if since:
            sent["$gte"] = since
        if until:
            sent["$lt"] = until
        if sent:
            query["metadata.syncDate"] = sent
        cursor = self.collection.find(query).sort("_id", ASCENDING)
        if limit:
            cursor = cursor.limit(limit)
        for doc in cursor:
            doc["rawData"] = from_document(doc.get("rawData") or {})
            yield doc

    def mark_failed_pending(self, doc_ids: Sequence[Any], at: datetime) -> int:
        """Failed documents sent through sync-in again become pending (`metadata.reprocessedAt`
        = `at`), so the next reprocess does not send them twice; returns how many changed."""
        if not doc_ids:
            return 0
        return self.collection.update_many(
            {"_id": {"$in": list(doc_ids)}, "syncStatus.inbound": FAILED},
            {"$set": {"syncStatus.inbound": PENDING, "metadata.reprocessedAt": at}},
        ).modified_count

    def count_expired(self, now: datetime) -> int:
        """Documents `purge_expired(now)` would delete: expiresAfter before `now`."""
        return self.collection.count_documents({"expiresAfter": {"$lt": now}})

    def purge_expired(self, now: datetime, batch: int = 1000) -> int:
        """Delete the documents whose expiresAfter is before `now` (`$lt`: one expiring at
        `now` exactly stays until the next purge); returns how many. Retention for servers
        without a TTL index (FerretDB v1): ids in batches, so each request stays bounded."""
        deleted = 0
        while True:
            ids = [d["_id"] for d in self.collection.find({"expiresAfter": {"$lt": now}}, {"_id": 1}).limit(batch)]
            if not ids:
                return deleted
            deleted += self.collection.delete_many({"_id": {"$in": ids}}).deleted_count
