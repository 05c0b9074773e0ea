"""The MongoDB wire-protocol server (FerretDB locally) is real: the operations the raw store
(syncflow/sinks/raw_store.py) and the raw-store commands rely on behave as MongoDB's —
unordered insert_many refusing duplicates per document, finds by _id (one and $in), deletes
by _id (DeleteOne bulk and delete_many with $in), delete-then-insert replacement, its
indexes, and documents whose keys are escaped because the server refuses '.' and '$'."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from bson import Binary
from pymongo import ASCENDING, DeleteOne, MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure, WriteError

from syncflow.sinks.raw_store import COLLECTION, DUPLICATE_KEY, RawRecordStore, from_document, to_document
from syncflow.settings import Settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def client(settings: Settings) -> Iterator[MongoClient]:
    c: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def raw_docs(client: MongoClient, settings: Settings) -> Collection:
    return client[settings.mongo_database][COLLECTION]


def doc(source_id: str, n: int = 1) -> dict:
    """A raw document shaped as the raw store writes it (_id joins the identity fields)."""
    return {
        "_id": f"yardi\x1flocation\x1f{source_id}", "sourceSystem": "yardi", "entityType": "location", "sourceId": source_id,
        "rawData": {"UnitCode": source_id, "Beds": n}, "metadata": {"hash": f"h{n}", "syncDate": T0},
        "syncStatus": {"inbound": "pending", "outbound": {}}, "errorLog": [], "createDate": T0,
        "expiresAfter": T0 + timedelta(days=n),
    }  # fmt: skip


def test_unordered_insert_many_refuses_each_duplicate_and_keeps_the_rest(raw_docs: Collection) -> None:
    raw_docs.insert_many([doc("U1"), doc("U2")], ordered=False)
    with pytest.raises(BulkWriteError) as refused:
        raw_docs.insert_many([doc("U3"), doc("U1", 2), doc("U4"), doc("U2", 2), doc("U5")], ordered=False)
    details = refused.value.details
    errors = sorted((e["index"], e["code"]) for e in details["writeErrors"])
    assert errors == [(1, DUPLICATE_KEY), (3, DUPLICATE_KEY)]  # the raw store maps index -> document
    assert details["nInserted"] == 3 and not details.get("writeConcernErrors")
    assert sorted(d["sourceId"] for d in raw_docs.find({}, {"sourceId": 1})) == ["U1", "U2", "U3", "U4", "U5"]
    assert raw_docs.find_one({"_id": doc("U1")["_id"]})["rawData"]["Beds"] == 1  # the first write stands


def test_finds_and_deletes_by_id(raw_docs: Collection) -> None:
    raw_docs.insert_many([doc(f"U{i}", i) for i in range(1, 7)], ordered=False)
    one = raw_docs.find_one({"_id": doc("U3")["_id"]})
    assert one is not None and one["createDate"] == T0 and one["metadata"]["syncDate"].tzinfo is not None
    assert raw_docs.find_one({"_id": doc("missing")["_id"]}) is None
    some = raw_docs.find({"_id": {"$in": [doc("U2")["_id"], doc("U5")["_id"], doc("nope")["_id"]]}}).sort("_id", ASCENDING)
    assert [d["sourceId"] for d in some] == ["U2", "U5"]

    bulk = raw_docs.bulk_write([DeleteOne({"_id": doc("U1")["_id"]}), DeleteOne({"_id": doc("nope")["_id"]})], ordered=False)
    assert bulk.deleted_count == 1
    gone = raw_docs.delete_many({"_id": {"$in": [doc("U2")["_id"], doc("U3")["_id"]]}})
    assert gone.deleted_count == 2
    expired = raw_docs.delete_many({"expiresAfter": {"$lt": T0 + timedelta(days=6)}})  # as RawRecordStore.purge_expired
    assert expired.deleted_count == 2  # U4, U5; U6 expires at the cutoff itself and stays
    assert [d["sourceId"] for d in raw_docs.find({})] == ["U6"]


def test_replace_is_delete_then_insert_by_id(raw_docs: Collection) -> None:
    raw_docs.insert_many([doc("U1"), doc("U2")], ordered=False)
    newer = [doc("U1", 2) | {"syncStatus": {"inbound": "completed", "outbound": {}}}, doc("U2", 3)]
    raw_docs.bulk_write([DeleteOne({"_id": d["_id"]}) for d in newer], ordered=False)
    raw_docs.insert_many(newer, ordered=False)
    assert raw_docs.count_documents({}) == 2
    assert [(d["sourceId"], d["rawData"]["Beds"]) for d in raw_docs.find({}).sort("_id", ASCENDING)] == [("U1", 2), ("U2", 3)]
    completed = list(raw_docs.find({"syncStatus.inbound": "completed"}, batch_size=1).sort("_id", ASCENDING))
    assert [d["sourceId"] for d in completed] == ["U1"]


def test_the_indexes_the_raw_store_creates(settings: Settings, client: MongoClient, raw_docs: Collection) -> None:
    store = RawRecordStore(settings, client=client)
    store.ensure_indexes()
    store.ensure_indexes()  # idempotent: every start of a worker calls it
    info = raw_docs.index_information()
    assert info["uq_source_entity_id"]["unique"] is True
    assert info["uq_source_entity_id"]["key"] == [("sourceSystem", 1), ("entityType", 1), ("sourceId", 1)]
    assert info["ix_hash"]["key"] == [("metadata.hash", 1)]
    assert info["ix_inbound"]["key"] == [("syncStatus.inbound", 1)]
    expires = "ttl_expires" if store.ttl_supported else "ix_expires"
    assert info[expires]["key"] == [("expiresAfter", 1)]

    raw_docs.insert_one(doc("U1"))
    twin = doc("U1") | {"_id": "another id, same identity"}
    with pytest.raises(WriteError) as refused:  # the unique identity holds even under another _id
        raw_docs.insert_one(twin)
    assert refused.value.code == DUPLICATE_KEY


def test_keys_with_dots_and_dollars_are_refused_raw_and_stored_escaped(raw_docs: Collection) -> None:
    record = {"Unit.Code": "101", "$type": "x", "Ｕnit．Code": "look-alike", "nested": [[1, 2], [3]],
              "Address": {"Line.1": "1 Main St", "Geo": {"$lat": 30.2}}, "blob": b"\x00\xff"}  # fmt: skip
    with pytest.raises((WriteError, OperationFailure, BulkWriteError, ValueError)):
        raw_docs.insert_one({"_id": "raw", "rawData": {"Unit.Code": "101", "$type": "x"}})
    raw_docs.insert_one({"_id": "escaped", "rawData": to_document(record)})
    stored = raw_docs.find_one({"_id": "escaped"})
    assert isinstance(stored["rawData"]["blob"], bytes | Binary)
    assert from_document(stored["rawData"]) == record


def test_one_nested_field_set_by_id(raw_docs: Collection) -> None:
    """What sync-out's outbound statuses rely on: `$set` of one nested field, filtered by _id,
    leaving the rest of the document as it was."""
    raw_docs.insert_one(doc("U1"))
    result = raw_docs.update_one({"_id": doc("U1")["_id"]}, {"$set": {"syncStatus.outbound.one": "synced"}})
    assert result.matched_count == 1
    stored = raw_docs.find_one({"_id": doc("U1")["_id"]})
    assert stored is not None and stored["syncStatus"]["outbound"] == {"one": "synced"}
    assert stored["syncStatus"]["inbound"] == doc("U1")["syncStatus"]["inbound"]
