"""`syncflow raw purge` and `raw reprocess` on the real MongoDB-compatible server."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from typer.testing import CliRunner

from syncflow.cli import raw
from syncflow.connectors.schemas import load_schema, schema_name
from syncflow.ops.reprocess import ReprocessFilter, reprocess
from syncflow.sinks.raw_store import RawRecordStore, to_document
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import Settings
from tests.integration.ops.conftest import consume_all

runner = CliRunner()


def test_purge_deletes_only_expired_documents(cli_settings: Settings) -> None:
    store = RawRecordStore(cli_settings)
    coll = store.collection
    now = datetime.now(timezone.utc)
    coll.insert_many([
        {"sourceId": "old-1", "expiresAfter": now - timedelta(days=2)},
        {"sourceId": "old-2", "expiresAfter": now - timedelta(seconds=5)},
        {"sourceId": "fresh", "expiresAfter": now + timedelta(days=2)},
    ])
    dry = runner.invoke(raw.app, ["purge", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert (json.loads(dry.stdout)["expired"], json.loads(dry.stdout)["deleted"]) == (2, 0)
    assert coll.count_documents({}) == 3
    real = runner.invoke(raw.app, ["purge", "--json"])
    assert json.loads(real.stdout)["deleted"] == 2
    assert [d["sourceId"] for d in coll.find({})] == ["fresh"]
    store.close()


def minimal_record(schema: Any, named: dict[str, Any] | None = None) -> Any:
    """A value that fits `schema`: the first non-null branch, every field filled."""
    named = {} if named is None else named
    if isinstance(schema, list):
        return None if "null" in schema else minimal_record(schema[0], named)
    if isinstance(schema, str):
        if schema in named:
            return minimal_record(named[schema], named)
        return {"string": "x.y", "long": 1, "int": 1, "double": 1.5, "float": 1.5, "boolean": True, "bytes": b"b"}[schema]
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        if "namespace" in schema:
            named[f"{schema['namespace']}.{schema['name']}"] = schema
        return {f["name"]: minimal_record(f["type"], named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][0]
    if kind == "array":
        return []
    if kind == "map":
        return {}
    return minimal_record(kind, named)


def test_reprocess_sends_failed_documents_back_to_their_raw_topic(
    cli_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("raw.yardi")
    record = minimal_record(load_schema(cli_settings.schemas_dir, "yardi", "location"))
    store = RawRecordStore(cli_settings)
    coll = store.collection
    base = {"sourceSystem": "yardi", "entityType": "location", "metadata": {"syncDate": datetime.now(timezone.utc)}}
    coll.insert_many([
        {**base, "sourceId": "L1", "rawData": to_document(record), "syncStatus": {"inbound": "failed"}},
        {**base, "sourceId": "L2", "rawData": to_document(record), "syncStatus": {"inbound": "completed"}},
        {**base, "sourceId": "L3", "rawData": {"not": "a location"}, "syncStatus": {"inbound": "failed"}},
        {**base, "entityType": "resident", "sourceId": "R1", "rawData": {}, "syncStatus": {"inbound": "failed"}},
    ])
    dry = runner.invoke(raw.app, ["reprocess", "--source", "yardi", "--entity-type", "location", "--dry-run", "--json"])
    assert dry.exit_code == 3, dry.output  # L3 cannot be encoded
    body = json.loads(dry.stdout)
    assert (body["sent"], [f["source_id"] for f in body["failed"]]) == (1, ["L3"])
    assert coll.count_documents({"syncStatus.inbound": "failed"}) == 3  # dry run changed nothing

    codec = codec_for(cli_settings)
    result = reprocess(store, ReliableProducer(cli_settings), lambda s, r, t: codec.encode(s, r, topic=t),
                       ReprocessFilter("yardi", "location"), topic_for=lambda source: topic)
    assert [r["source_id"] for r in result.sent] == ["L1"]
    [msg] = consume_all(cli_settings, topic, "check-" + topic, expected=1)
    assert msg.key() == b"location:L1"
    decoded = codec.decode(msg.value())
    assert decoded.schema_name == schema_name("yardi", "location")
    assert decoded.record == record
    assert dict(msg.headers())["source-system"] == b"yardi"
    assert coll.find_one({"sourceId": "L1"})["syncStatus"]["inbound"] == "pending"
    again = reprocess(store, ReliableProducer(cli_settings), lambda s, r, t: codec.encode(s, r, topic=t),
                      ReprocessFilter("yardi", "location"), topic_for=lambda source: topic)
    assert again.sent == []  # L1 is pending now; only the unencodable L3 is left
    store.close()
