"""The raw store's queries for the operations commands (`syncflow raw reprocess`, `syncflow
raw purge`) on the real MongoDB wire-protocol server (FerretDB locally)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncflow.model import RawDocument, RawKey
from syncflow.sinks.raw_store import Completed, RawFailed, RawRecordStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write(store: RawRecordStore, key: RawKey, sent_at: datetime, failed: bool) -> None:
    outcome = RawFailed(key, "validation") if failed else Completed(key, {"entity_id": key.source_id}, version=1)
    store.upsert_raw_many([RawDocument(key, {"unit.code": key.source_id, "$rent": 1}, "h")], now=sent_at, outcomes=[outcome])


def test_find_failed_filters_by_source_type_and_send_time_and_unescapes(store: RawRecordStore) -> None:
    write(store, RawKey("yardi", "location", "L1"), T0, failed=True)
    write(store, RawKey("yardi", "location", "L2"), T0 + timedelta(hours=1), failed=True)
    write(store, RawKey("yardi", "location", "L3"), T0 + timedelta(hours=2), failed=True)
    write(store, RawKey("yardi", "location", "ok"), T0, failed=False)
    write(store, RawKey("yardi", "resident", "R1"), T0, failed=True)
    write(store, RawKey("realpage", "location", "P1"), T0, failed=True)

    def ids(**kwargs: object) -> list[str]:
        return [d["sourceId"] for d in store.find_failed(**kwargs)]  # type: ignore[arg-type]

    assert sorted(ids()) == ["L1", "L2", "L3", "P1", "R1"]
    assert ids(source="yardi", entity_type="location") == ["L1", "L2", "L3"]  # _id order
    # since inclusive, until exclusive
    assert ids(source="yardi", entity_type="location", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2)) == ["L2"]
    assert ids(source="yardi", entity_type="location", limit=2) == ["L1", "L2"]
    [doc] = store.find_failed(source="realpage")
    assert doc["rawData"] == {"unit.code": "P1", "$rent": 1}  # as the source sent it


def test_mark_failed_pending_changes_only_failed_documents(store: RawRecordStore) -> None:
    failed, done = RawKey("yardi", "location", "L1"), RawKey("yardi", "location", "L2")
    write(store, failed, T0, failed=True)
    write(store, done, T0, failed=False)
    assert store.mark_failed_pending([], T0) == 0
    assert store.mark_failed_pending([failed.doc_id, done.doc_id], T0 + timedelta(days=1)) == 1
    doc = store.find_one(failed)
    assert doc is not None and doc["syncStatus"]["inbound"] == "pending"
    assert doc["metadata"]["reprocessedAt"] == T0 + timedelta(days=1)
    assert store.find_one(done)["syncStatus"]["inbound"] == "completed"  # type: ignore[index]
    assert list(store.find_failed()) == []


def test_purge_deletes_what_expired_strictly_before_now_in_batches(store: RawRecordStore) -> None:
    now = T0 + timedelta(days=30)
    expires = {"old-1": now - timedelta(days=2), "old-2": now - timedelta(days=1), "old-3": now - timedelta(milliseconds=1),
               "at-now": now, "fresh": now + timedelta(days=1)}
    store.collection.insert_many([{"_id": i, "sourceId": i, "expiresAfter": at} for i, at in expires.items()])
    assert store.count_expired(now) == 3
    assert store.purge_expired(now, batch=2) == 3  # two batches
    assert sorted(d["_id"] for d in store.collection.find({})) == ["at-now", "fresh"]
    assert store.count_expired(now) == 0 and store.purge_expired(now) == 0
