"""Plain parts of status and reprocess: group and topic lists, records."""

from __future__ import annotations

from datetime import datetime, timezone

from syncflow.ops.reprocess import to_outgoing
from syncflow.ops.status import consumer_groups, dlq_topics
from syncflow.streams.headers import ENTITY_TYPE, SOURCE_SYSTEM, TRACE_ID
from syncflow.settings import Settings


def test_groups_and_dlq_topics_follow_the_targets() -> None:
    settings = Settings()
    groups = consumer_groups(settings)
    assert groups["sync-in"] == ["raw.yardi", "raw.realpage", "raw.insight", "raw.lessen360"]
    assert "sync-out.one.retry.3" in groups["sync-out.one"] and "changes.location" in groups["sync-out.lessen360"]
    assert dlq_topics(settings) == ["sync-in.dlq", "sync-out.one.dlq", "sync-out.lessen360.dlq"]


def test_to_outgoing_encodes_raw_data_with_the_native_schema_and_sets_key_and_headers() -> None:
    seen: list[tuple[str, dict, str]] = []

    def encode(schema: str, record: dict, topic: str) -> bytes:
        seen.append((schema, record, topic))
        return b"avro"

    doc = {"sourceSystem": "yardi", "entityType": "location", "sourceId": "P1-101",
           "rawData": {"a.b": 1, "$c": [[1]]}, "metadata": {"traceId": "t-1"}}
    rec = to_outgoing(doc, encode, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert seen == [("io.syncflow.yardi.Location", {"a.b": 1, "$c": [[1]]}, "raw.yardi")]
    assert (rec.topic, rec.key, rec.value) == ("raw.yardi", b"location:P1-101", b"avro")
    headers = dict(rec.headers)
    assert (headers[SOURCE_SYSTEM], headers[ENTITY_TYPE], headers[TRACE_ID]) == (b"yardi", b"location", b"t-1")

