"""The MongoDB wire-protocol server is real: the operations the raw store relies on
(insert_many, bulk upserts, sorted finds, unique and compound indexes) behave as MongoDB's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from syncflow.streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def raw_docs(settings: Settings) -> Iterator[Collection]:
    client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        yield client[settings.mongo_database]["client_raw_data"]
    finally:
        client.close()


def doc(source_id: str, version: int, status: str = "pending") -> dict:
    return {
        "sourceSystem": "yardi",
        "sourceId": source_id,
        "entityType": "location",
        "rawData": {"UnitCode": source_id, "Beds": version},
        "metadata": {"hash": f"h{version}", "version": version},
        "syncStatus": {"inbound": status},
        "createDate": datetime(2026, 1, version, tzinfo=timezone.utc),
    }


def test_indexes_insert_upsert_and_sorted_find(raw_docs: Collection) -> None:
    unique_name = raw_docs.create_index(
        [("sourceSystem", ASCENDING), ("sourceId", ASCENDING), ("entityType", ASCENDING)], unique=True
    )
    status_name = raw_docs.create_index([("syncStatus.inbound", ASCENDING), ("createDate", DESCENDING)])
    info = raw_docs.index_information()
    assert info[unique_name]["unique"] is True
    assert info[status_name]["key"] == [("syncStatus.inbound", 1), ("createDate", -1)]

    result = raw_docs.insert_many([doc(f"U{i}", i) for i in range(1, 6)])
    assert len(result.inserted_ids) == 5
    with pytest.raises(DuplicateKeyError):
        raw_docs.insert_one(doc("U1", 9))

    upserts = [
        UpdateOne(
            {"sourceSystem": "yardi", "sourceId": sid, "entityType": "location"},
            {"$set": {"metadata.hash": "new", "syncStatus.inbound": "processed"},
             "$setOnInsert": {"createDate": datetime(2026, 2, 1, tzinfo=timezone.utc)}},
            upsert=True,
        )
        for sid in ("U2", "U4", "U7")
    ]
    bulk = raw_docs.bulk_write(upserts, ordered=False)
    assert (bulk.matched_count, bulk.modified_count, bulk.upserted_count) == (2, 2, 1)
    assert raw_docs.count_documents({}) == 6

    processed = list(raw_docs.find({"syncStatus.inbound": "processed"}, {"_id": 0, "sourceId": 1}).sort("createDate", DESCENDING))
    assert [d["sourceId"] for d in processed] == ["U7", "U4", "U2"]
    pending = raw_docs.find({"syncStatus.inbound": "pending"}).sort([("createDate", ASCENDING)]).limit(2)
    assert [d["sourceId"] for d in pending] == ["U1", "U3"]
    assert raw_docs.find_one({"sourceId": "U7"})["createDate"] == datetime(2026, 2, 1, tzinfo=timezone.utc)

    # the unique index also guards bulk inserts; unordered writes keep the good ones
    with pytest.raises(BulkWriteError) as info:
        raw_docs.insert_many([doc("U8", 8), doc("U1", 1)], ordered=False)
    assert info.value.details["nInserted"] == 1
    assert raw_docs.count_documents({}) == 7
