"""RegistryCodec against the real Confluent-compatible registry (Apicurio) of the local
stack. Each test uses its own topic and record namespace, so subjects never collide."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncflow.errors import SchemaMismatchError, UnknownSchemaError
from syncflow.streams.avro import RegistryCodec, registry_client
from syncflow.streams.schemas import SchemaCatalogue
from tests.integration.streams.conftest import registry_url

pytestmark = pytest.mark.integration

DEFAULT_URL = "http://127.0.0.1:8081/apis/ccompat/v7"


@pytest.fixture(scope="module")
def client():
    url = registry_url(DEFAULT_URL)
    client = registry_client(url)
    try:
        client.get_subjects()
    except Exception as exc:
        pytest.fail(f"schema registry at {url} does not answer ({exc}); start it with "
                    "`deploy/local/stack.sh up --with-registry`", pytrace=False)
    return client


@pytest.fixture
def names(client, unique: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """(topic, record full name), unique to the test; their subjects are deleted afterwards."""
    topic, name = unique("registry-test"), f"io.syncflow.test_{uuid.uuid4().hex[:10]}.Thing"
    yield topic, name
    for subject in client.get_subjects():
        if subject.startswith(topic) or subject.endswith(name):
            client.delete_subject(subject)


def thing(name: str, *extra_fields: dict) -> dict:
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": "id", "type": "string"}, {"name": "count", "type": "int"}, *extra_fields],
    }


def catalogue(tmp_path: Path, label: str, *schemas: dict) -> SchemaCatalogue:
    root = tmp_path / label
    root.mkdir()
    for i, schema in enumerate(schemas):
        (root / f"S{i}.avsc").write_text(json.dumps(schema))
    return SchemaCatalogue.load(root)


def test_registers_on_first_use_and_round_trips(client, names, tmp_path: Path) -> None:
    topic, name = names
    cat = catalogue(tmp_path, "v1", thing(name))
    writer = RegistryCodec(cat, client)
    data = writer.encode(name, {"id": "a", "count": 1}, topic=topic)
    subject = f"{topic}-{name}"
    assert subject in client.get_subjects()
    latest = client.get_latest_version(subject)
    assert struct.unpack(">bI", data[:5]) == (0, latest.schema_id)
    writer.encode(name, {"id": "b", "count": 2}, topic=topic)
    assert client.get_versions(subject) == [latest.version]  # registered once

    reader = RegistryCodec(cat, registry_client(registry_url(DEFAULT_URL)))  # fresh caches, as another process
    decoded = reader.decode(data, topic=topic)
    assert decoded.schema_name == name
    assert decoded.record == {"id": "a", "count": 1}


def test_record_name_strategy_without_topic(client, names, tmp_path: Path) -> None:
    _, name = names
    codec = RegistryCodec(catalogue(tmp_path, "v1", thing(name)), client)
    data = codec.encode(name, {"id": "a", "count": 1})
    assert name in client.get_subjects()
    assert codec.decode(data).record == {"id": "a", "count": 1}


def test_evolution_both_ways(client, names, tmp_path: Path) -> None:
    topic, name = names
    colour = {"name": "colour", "type": "string", "default": "blue"}
    old = RegistryCodec(catalogue(tmp_path, "v1", thing(name)), client)
    new = RegistryCodec(catalogue(tmp_path, "v2", thing(name, colour)), client)

    old_data = old.encode(name, {"id": "a", "count": 1}, topic=topic)
    new_data = new.encode(name, {"id": "b", "count": 2, "colour": "red"}, topic=topic)
    assert old_data[1:5] != new_data[1:5]  # two versions, two ids
    assert len(client.get_versions(f"{topic}-{name}")) == 2

    # a new reader reads old data: the added field takes its default
    assert RegistryCodec(new.catalogue, client).decode(old_data).record == {"id": "a", "count": 1, "colour": "blue"}
    # an old reader reads new data: the writer schema comes from the registry
    assert RegistryCodec(old.catalogue, client).decode(new_data).record == {"id": "b", "count": 2}


def test_incompatible_reader_is_a_schema_mismatch(client, names, tmp_path: Path) -> None:
    topic, name = names
    data = RegistryCodec(catalogue(tmp_path, "v1", thing(name)), client).encode(name, {"id": "a", "count": 1},
                                                                                 topic=topic)
    incompatible = thing(name, {"name": "size", "type": "int"})  # required, no default
    reader = RegistryCodec(catalogue(tmp_path, "v2", incompatible), client)
    with pytest.raises(SchemaMismatchError, match=name):
        reader.decode(data, topic=topic)


def test_unknown_schema_id_is_a_typed_error(client, tmp_path: Path) -> None:
    codec = RegistryCodec(catalogue(tmp_path, "empty"), client)
    unknown_id = 2_000_000_000 + uuid.uuid4().int % 100_000_000
    with pytest.raises(UnknownSchemaError, match=f"schema id {unknown_id}"):
        codec.decode(b"\x00" + struct.pack(">I", unknown_id) + b"\x02a\x02", topic="raw.test")
