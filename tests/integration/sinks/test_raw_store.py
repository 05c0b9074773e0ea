"""The raw store on the real MongoDB wire-protocol server (FerretDB locally)."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect

from syncflow.errors import FieldError
from syncflow.model import RawDocument, RawKey
from syncflow.sinks.raw_store import Completed, RawFailed, RawRecordStore
from syncflow.settings import Settings

pytestmark = pytest.mark.integration


def key(i: int) -> RawKey:
    return RawKey("yardi", "location", f"u-{i}")


def test_upsert_keeps_one_document_per_identity_with_latest_raw_data(store: RawRecordStore) -> None:
    store.upsert_raw_many([RawDocument(key(1), {"unit.code": "U1", "$rent": 10}, "h1", batch_number=7)])
    result = store.upsert_raw_many([RawDocument(key(1), {"unit.code": "U1", "$rent": 12}, "h2", batch_number=8), RawDocument(key(2), {"a": 1}, "h3")])
    assert result.rejected == {}
    assert store.collection.count_documents({}) == 2
    doc = store.find_one(key(1))
    assert doc is not None
    assert doc["rawData"] == {"unit.code": "U1", "$rent": 12}
    assert doc["metadata"]["hash"] == "h2" and doc["metadata"]["batchNumber"] == 8
    assert doc["syncStatus"] == {"inbound": "pending", "outbound": {}}
    assert doc["errorLog"] == [] and doc["expiresAfter"] > doc["createDate"]


def test_completed_failed_and_outbound(store: RawRecordStore) -> None:
    outcomes = [Completed(key(0), {"entity_id": "loc-1"}, version=1),
                RawFailed(key(1), "validation", [FieldError("required", "unit_code", None, "is missing")]), None]
    store.upsert_raw_many([RawDocument(key(i), {"i": i}, f"h{i}") for i in range(3)], outcomes=outcomes)
    store.set_outbound_statuses([("yardi", "location", "u-0", "one", "synced"), ("yardi", "location", "u-0", "lessen360", "failed")])
    done = store.find_one(key(0))
    assert done is not None and done["syncStatus"] == {"inbound": "completed", "outbound": {"one": "synced", "lessen360": "failed"}}
    # a plain query on client_raw_data reads them, no merge needed
    assert store.collection.count_documents({"syncStatus.outbound.one": "synced"}) == 1
    # the record's next version: every target has yet to get it (pending), until sync-out says otherwise
    store.upsert_raw_many([RawDocument(key(0), {"i": 0, "new": True}, "h0b")],
                          outcomes=[Completed(key(0), {"entity_id": "loc-1"}, version=2)])
    again = store.collection.find_one({"_id": key(0).doc_id})
    assert again is not None and again["syncStatus"]["outbound"] == {"one": "pending", "lessen360": "pending"}
    store.upsert_raw_many([RawDocument(key(0), {"i": 0, "new": True}, "h0b")],
                          outcomes=[Completed(key(0), {"entity_id": "loc-1"}, version=None)])  # unchanged re-send
    again = store.collection.find_one({"_id": key(0).doc_id})
    assert again is not None and again["syncStatus"]["outbound"] == {"one": "pending", "lessen360": "pending"}
    assert done["processedData"] == {"entity_id": "loc-1"} and done["metadata"]["version"] == 1


def test_ensure_indexes_is_repeatable_and_detects_ttl(store: RawRecordStore) -> None:
    store.ensure_indexes()
    names = set(store.collection.index_information())
    assert "uq_source_entity_id" in names and "ix_hash" in names
    assert store.ttl_supported in (True, False)
    assert ("ttl_expires" in names) == store.ttl_supported


class InsertFailsOnce:
    """The real collection, except that the next insert_many loses its connection before
    reaching the server — as a restart of the server between the delete and the insert does."""

    def __init__(self, collection):  # type: ignore[no-untyped-def]
        self._collection, self.armed = collection, True

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._collection, name)

    def insert_many(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            raise AutoReconnect("connection closed (injected)")
        return self._collection.insert_many(*args, **kwargs)


def test_a_rewrite_interrupted_after_its_delete_loses_no_document(store: RawRecordStore) -> None:
    store.upsert_raw_many([RawDocument(key(i), {"i": i}, f"h{i}") for i in range(3)])
    real = store.collection
    store.collection = InsertFailsOnce(real)  # type: ignore[assignment]
    docs = [RawDocument(key(i), {"i": i}, f"h{i}") for i in range(3)]
    outcomes = [Completed(key(i), {"entity_id": f"loc-{i}"}, version=1) for i in range(3)]
    with pytest.raises(AutoReconnect):
        store.upsert_raw_many(docs, outcomes=outcomes)
    assert real.count_documents({}) == 0  # deleted, not yet inserted: held by the store
    store.upsert_raw_many(docs, outcomes=outcomes)  # the retry
    store.collection = real
    docs = [store.find_one(key(i)) for i in range(3)]
    assert all(d is not None and d["syncStatus"]["inbound"] == "completed" and d["rawData"] == {"i": i}
               for i, d in enumerate(docs)), docs


class CountingFinds:
    """The real collection, counting find_one calls (what a rewrite reads from the server)."""

    def __init__(self, collection):  # type: ignore[no-untyped-def]
        self._collection = collection
        self.calls: list[object] = []  # list.append is atomic: the store reads in threads

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._collection, name)

    def find_one(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(args)
        return self._collection.find_one(*args, **kwargs)


def test_new_identities_are_inserted_with_their_outcome_without_reading(store: RawRecordStore) -> None:
    counting = CountingFinds(store.collection)
    store.collection = counting  # type: ignore[assignment]
    outcomes = [RawFailed(key(0), "validation")] + [Completed(key(i), {"entity_id": f"loc-{i}"}, version=1) for i in range(1, 4)]
    store.upsert_raw_many([RawDocument(key(i), {"i": i}, f"h{i}") for i in range(4)], outcomes=outcomes)
    assert counting.calls == []
    store.upsert_raw_many([RawDocument(key(1), {"i": 10}, "h10")], outcomes=[Completed(key(1), {"entity_id": "loc-1"})])
    assert len(counting.calls) == 1  # an identity it wrote before is read, to keep its history
    store.collection = counting._collection
    assert store.find_one(key(0))["syncStatus"]["inbound"] == "failed"  # type: ignore[index]
    assert store.find_one(key(0))["errorLog"][0]["error"] == "validation"  # type: ignore[index]
    assert all(store.find_one(key(i))["metadata"]["version"] == 1 for i in range(1, 4))  # type: ignore[index]
    assert store.find_one(key(1))["rawData"] == {"i": 10}  # type: ignore[index]


def test_an_upsert_reads_what_another_writer_left_not_its_own_earlier_write(settings: Settings, store: RawRecordStore) -> None:
    store.upsert_raw_many([RawDocument(key(1), {"i": 1}, "h1")], outcomes=[Completed(key(1), {"entity_id": "loc-1"}, version=1)])
    other = RawRecordStore(settings)  # e.g. the worker that owned the partition in between
    try:
        other.upsert_raw_many([RawDocument(key(1), {"i": 2}, "h2")], outcomes=[RawFailed(key(1), "validation")])
    finally:
        other.close()
    store.upsert_raw_many([RawDocument(key(1), {"i": 3}, "h3")])
    doc = store.find_one(key(1))
    assert doc is not None and doc["rawData"] == {"i": 3}
    assert [e["error"] for e in doc["errorLog"]] == ["validation"] and doc["metadata"]["version"] == 1


class InsertAnswerLost:
    """The real collection, except that the next insert_many reaches the server and is done
    there, but its answer is lost (as a client timeout on a slow server)."""

    def __init__(self, collection):  # type: ignore[no-untyped-def]
        self._collection, self.armed = collection, True
        self.inserted: list[list[str]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._collection, name)

    def insert_many(self, docs, *args, **kwargs):  # type: ignore[no-untyped-def]
        docs = list(docs)
        self.inserted.append([d["_id"] for d in docs])
        result = self._collection.insert_many(docs, *args, **kwargs)
        if self.armed:
            self.armed = False
            raise AutoReconnect("timed out (injected, after the server did it)")
        return result


def test_inserts_whose_answer_was_lost_are_not_sent_again(store: RawRecordStore) -> None:
    """A retry after a lost answer reads what it wrote instead of inserting it again (a bulk
    with duplicates is one insert per document on FerretDB), for new identities and for a
    rewrite's re-insert alike, and ends with each document written once with its outcome."""
    lossy = InsertAnswerLost(store.collection)
    store.collection = lossy  # type: ignore[assignment]
    docs = [RawDocument(key(i), {"i": i}, f"h{i}") for i in range(3)]
    outcomes = [Completed(key(i), {"entity_id": f"loc-{i}"}, version=1) for i in range(3)]
    with pytest.raises(AutoReconnect):
        store.upsert_raw_many(docs, outcomes=outcomes)
    store.upsert_raw_many(docs, outcomes=outcomes)  # the retry: the identities are read, then rewritten
    assert len(lossy.inserted) == 2  # the lost insert, then one re-insert after the reads: no insert of duplicates
    lossy.armed = True
    again = [RawDocument(key(i), {"i": i + 10}, f"g{i}") for i in range(3)]
    with pytest.raises(AutoReconnect):  # a rewrite whose re-insert answer is lost
        store.upsert_raw_many(again, outcomes=outcomes)
    before = len(lossy.inserted)
    store.upsert_raw_many(again, outcomes=outcomes)
    assert all(len(ids) == 3 for ids in lossy.inserted[before:])  # the held documents are not inserted twice
    assert len(lossy.inserted) == before + 1
    store.collection = lossy._collection
    assert [store.find_one(key(i))["rawData"] for i in range(3)] == [{"i": i + 10} for i in range(3)]  # type: ignore[index]
    assert store.collection.count_documents({}) == 3
