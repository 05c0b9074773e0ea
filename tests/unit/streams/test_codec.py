"""The Faust codec: dumps/loads round trips through Faust's own codec registry."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from faust.serializers import codecs
from faust.serializers.registry import Registry

from syncflow.errors import DecodeError, EncodeError
from syncflow.streams.avro import DecodedRecord, RegistryCodec, SingleObjectCodec, registry_client
from syncflow.streams.codec import FaustAvroCodec, register_faust_codec
from syncflow.streams.schemas import SchemaCatalogue
from syncflow.settings import Settings

CHANGE_EVENT = "io.syncflow.canonical.ChangeEvent"
EVENT = {
    "event_id": "sr-1:1",
    "entity_type": "service_request",
    "entity_id": "sr-1",
    "version": 1,
    "change_type": "create",
    "origin_source": "lessen360",
    "origin_source_id": "WO-9",
    "priority": 1,
    "changed_fields": ["status"],
    "snapshot": "{}",
    "references": {},
    "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    "trace_id": None,
}


def codec_name() -> str:
    return f"avro-test-{uuid.uuid4().hex[:8]}"


def test_registered_codec_round_trips_decoded_records() -> None:
    name = codec_name()
    registered = register_faust_codec(Settings(schema_registry_url=None), name)
    codec = codecs.get_codec(name)
    assert codec is registered
    data = codec.dumps(DecodedRecord(CHANGE_EVENT, EVENT))
    assert data[:2] == b"\xc3\x01"
    assert codec.loads(data) == DecodedRecord(CHANGE_EVENT, EVENT)


def test_faust_serializer_registry_uses_it_for_value_serializer() -> None:
    name = codec_name()
    register_faust_codec(Settings(schema_registry_url=None), name, schema_name=CHANGE_EVENT)
    serializers = Registry()
    data = serializers.dumps_value(None, EVENT, serializer=name)
    assert isinstance(data, bytes)
    assert serializers.loads_value(None, data, serializer=name) == EVENT


def test_bound_codec_dumps_and_loads_plain_dicts(repo_catalogue: SchemaCatalogue) -> None:
    codec = FaustAvroCodec(RegistryCodec(repo_catalogue, registry_client("mock://")), CHANGE_EVENT)
    data = codec.dumps(EVENT)
    assert data[0] == 0  # the registry wire format
    assert codec.loads(data) == EVENT


def test_clone_keeps_the_avro_codec(repo_catalogue: SchemaCatalogue) -> None:
    codec = FaustAvroCodec(SingleObjectCodec(repo_catalogue), CHANGE_EVENT)
    clone = codec.clone()
    assert isinstance(clone, FaustAvroCodec)
    assert clone.loads(codec.dumps(EVENT)) == EVENT


def test_wrong_values_are_typed_errors(repo_catalogue: SchemaCatalogue) -> None:
    unbound = FaustAvroCodec(SingleObjectCodec(repo_catalogue))
    with pytest.raises(EncodeError, match="DecodedRecord"):
        unbound.dumps(EVENT)
    bound = FaustAvroCodec(SingleObjectCodec(repo_catalogue), CHANGE_EVENT)
    with pytest.raises(EncodeError, match="io.syncflow.canonical.Location"):
        bound.dumps(DecodedRecord("io.syncflow.canonical.Location", {}))
    with pytest.raises(EncodeError, match="version"):
        bound.dumps({**EVENT, "version": "one"})
    with pytest.raises(DecodeError):
        bound.loads(b"not avro")
