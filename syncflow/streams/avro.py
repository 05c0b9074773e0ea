"""Avro encoding and decoding of Kafka record values, in the two wire formats syncflow
speaks: single-object encoding (the embedded default, schemas from `avro_schemas/`) and the
Confluent wire format through a Confluent-compatible schema registry.

Every failure is a typed error from syncflow.errors, so a caller can route the record
(DLQ, retry) instead of crashing: DecodeError / UnknownSchemaError / SchemaMismatchError
when reading, EncodeError when a record does not fit its schema.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO
from typing import Any, Protocol

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from syncflow.errors import (
    DecodeError,
    EncodeError,
    SchemaMismatchError,
    SchemaRegistrationError,
    SchemaRegistryUnavailableError,
    SyncflowError,
    UnknownSchemaError,
)
from syncflow.streams.schemas import SchemaCatalogue, SchemaVersion, make_version
from syncflow.streams.security import registry_config
from syncflow.settings import SchemaRegistrySecuritySettings, Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER = struct.Struct(">bI")


@dataclass(frozen=True)
class DecodedRecord:
    schema_name: str  # full name of the writer schema
    record: dict  # fastavro's python form (datetime for timestamp-millis, date, Decimal)


class AvroCodec(Protocol):
    def encode(self, schema_name: str, record: dict, *, topic: str | None = None) -> bytes: ...

    def decode(self, data: bytes, *, topic: str | None = None, reader: str | None = None) -> DecodedRecord: ...


@dataclass(frozen=True)
class ReadPlan:
    """How to read one writer schema: resolved once per (writer, reader), then reused."""

    writer_name: str
    writer: Any  # parsed writer schema
    reader: Any | None  # parsed reader schema, None when it is the writer's own


def write_body(version: SchemaVersion, record: dict, out: BytesIO) -> None:
    """Append the Avro binary body of `record`, after checking it fits the schema.

    fastavro's writer silently truncates some wrong values (a float for an int), so the
    record is validated first; the message names the failing field."""
    if not isinstance(record, dict):
        raise EncodeError(f"{version.name}: expected a dict record, got {type(record).__name__}")
    unknown = record.keys() - version.field_names
    if unknown:
        raise EncodeError(f"{version.name}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    try:
        # a quiet check first: with raise_errors=True fastavro builds an exception for every
        # union branch that does not match (~35x slower); it runs only to name what failed
        if not validate(record, version.parsed, raise_errors=False):
            validate(record, version.parsed, raise_errors=True)
    except AvroValidationError as exc:
        raise EncodeError(f"{version.name}: record does not fit the schema: {'; '.join(map(str, exc.errors))}") from exc
    except Exception as exc:  # fastavro's logical-type checks (decimal scale/precision) name no field
        where = ", ".join(f"{path}={value}" for path, value in decimal_values(record)) or "unknown field"
        raise EncodeError(f"{version.name}: record does not fit the schema: {exc} (decimal values: {where})") from exc
    try:
        schemaless_writer(out, version.parsed, record)
    except Exception as exc:
        raise EncodeError(f"{version.name}: cannot encode record: {exc}") from exc


def decimal_values(value: Any, path: str = "") -> list[tuple[str, Decimal]]:
    """(dotted path, value) of every Decimal in a record, to say which one broke a decimal rule."""
    if isinstance(value, Decimal):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in decimal_values(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in decimal_values(v, f"{path}[{i}]")]
    return []


def read_body(plan: ReadPlan, data: bytes, offset: int, what: str) -> DecodedRecord:
    """Decode the Avro body that starts at `offset`; it must use every remaining byte."""
    buffer = BytesIO(data)
    buffer.seek(offset)
    try:
        record = schemaless_reader(buffer, plan.writer, plan.reader)
    except SchemaResolutionError as exc:
        raise SchemaMismatchError(f"{what}: cannot resolve writer {plan.writer_name} to the reader schema: {exc}") from exc
    except EOFError as exc:
        raise DecodeError(f"{what}: body truncated ({len(data) - offset} bytes) for {plan.writer_name}") from exc
    except Exception as exc:
        raise DecodeError(f"{what}: body is truncated or not a valid {plan.writer_name} ({type(exc).__name__}: {exc})") from exc
    left = len(data) - buffer.tell()
    if left:
        raise DecodeError(f"{what}: {left} unread byte(s) after the {plan.writer_name} body")
    if not isinstance(record, dict):
        raise DecodeError(f"{what}: {plan.writer_name} did not decode to a record")
    return DecodedRecord(plan.writer_name, record)


def plan_for(catalogue: SchemaCatalogue, writer: SchemaVersion, reader: str | None) -> ReadPlan:
    """Read with the local current schema of the writer's name, or the named `reader`."""
    target = catalogue.get(reader) if reader is not None else catalogue.find(writer.name)
    if target is None or target.fingerprint == writer.fingerprint:
        return ReadPlan(writer.name, writer.parsed, None)
    return ReadPlan(writer.name, writer.parsed, target.parsed)


class SingleObjectCodec:
    """Avro single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint
    of the writer schema, then the Avro binary body. Schemas come from the catalogue."""

    def __init__(self, catalogue: SchemaCatalogue):
        self.catalogue = catalogue
        self._plans: dict[tuple[bytes, str | None], ReadPlan] = {}

    def encode(self, schema_name: str, record: dict, *, topic: str | None = None) -> bytes:
        try:
            version = self.catalogue.get(schema_name)
        except UnknownSchemaError as exc:
            raise EncodeError(str(exc)) from exc
        out = BytesIO()
        out.write(SINGLE_OBJECT_MAGIC)
        out.write(version.fingerprint)
        write_body(version, record, out)
        return out.getvalue()

    def decode(self, data: bytes, *, topic: str | None = None, reader: str | None = None) -> DecodedRecord:
        what = f"record on {topic}" if topic else "record"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < SINGLE_OBJECT_HEADER:
            raise DecodeError(f"{what}: {len(data)} byte(s) is shorter than the single-object header")
        if data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(f"{what}: not Avro single-object encoding (starts with {data[:2].hex()}, expected c301)")
        fingerprint = data[2:SINGLE_OBJECT_HEADER]
        key = (fingerprint, reader)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_for(self.catalogue, self.catalogue.by_fingerprint(fingerprint), reader)
            self._plans[key] = plan
        return read_body(plan, data, SINGLE_OBJECT_HEADER, what)


class RegistryCodec:
    """The Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

    One topic carries several record types, so subjects follow the TopicRecordNameStrategy
    (`<topic>-<record full name>`), or the RecordNameStrategy without a topic. Schemas are
    registered on first use; ids are cached both ways."""

    def __init__(self, catalogue: SchemaCatalogue, client: SchemaRegistryClient):
        self.catalogue = catalogue
        self.client = client
        self._ids: dict[tuple[str, bytes], int] = {}  # (subject, fingerprint) -> id
        self._writers: dict[int, SchemaVersion] = {}  # id -> writer schema
        self._plans: dict[tuple[int, str | None], ReadPlan] = {}

    @staticmethod
    def subject(schema_name: str, topic: str | None) -> str:
        return f"{topic}-{schema_name}" if topic else schema_name

    def schema_id(self, schema_name: str, topic: str | None = None) -> int:
        """The registry id of the current `schema_name` under its subject, registered on first use."""
        version = self.catalogue.get(schema_name)
        subject = self.subject(schema_name, topic)
        key = (subject, version.fingerprint)
        schema_id = self._ids.get(key)
        if schema_id is None:
            schema_id = self._register(subject, version)
            self._ids[key] = schema_id
            self._writers.setdefault(schema_id, version)
        return schema_id

    def _register(self, subject: str, version: SchemaVersion) -> int:
        try:
            return int(self.client.register_schema(subject, Schema(version.to_json(), "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                raise SchemaRegistrationError(f"registry refused {version.name} under {subject}: {exc}") from exc
            raise SchemaRegistryUnavailableError(f"registry failed registering {subject}: {exc}") from exc
        except Exception as exc:
            raise SchemaRegistryUnavailableError(f"registry unreachable registering {subject}: {exc}") from exc

    def encode(self, schema_name: str, record: dict, *, topic: str | None = None) -> bytes:
        try:
            version = self.catalogue.get(schema_name)
        except UnknownSchemaError as exc:
            raise EncodeError(str(exc)) from exc
        out = BytesIO()
        out.write(bytes(CONFLUENT_HEADER.size))  # header written once the body is known good
        write_body(version, record, out)
        out.seek(0)
        out.write(CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, self.schema_id(schema_name, topic)))
        return out.getvalue()

    def decode(self, data: bytes, *, topic: str | None = None, reader: str | None = None) -> DecodedRecord:
        what = f"record on {topic}" if topic else "record"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < CONFLUENT_HEADER.size:
            raise DecodeError(f"{what}: {len(data)} byte(s) is shorter than the Confluent wire-format header")
        magic, schema_id = CONFLUENT_HEADER.unpack_from(data)
        if magic != CONFLUENT_MAGIC:
            raise DecodeError(f"{what}: not the Confluent wire format (magic byte {data[0]:#04x}, expected 0x00)")
        key = (schema_id, reader)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_for(self.catalogue, self.writer_schema(schema_id), reader)
            self._plans[key] = plan
        return read_body(plan, data, CONFLUENT_HEADER.size, what)

    def writer_schema(self, schema_id: int) -> SchemaVersion:
        """The writer schema of `schema_id`, fetched from the registry once."""
        version = self._writers.get(schema_id)
        if version is None:
            version = self._fetch(schema_id)
            self._writers[schema_id] = version
        return version

    def _fetch(self, schema_id: int) -> SchemaVersion:
        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaError(f"schema id {schema_id} is not in the registry") from exc
            raise SchemaRegistryUnavailableError(f"registry failed fetching schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise SchemaRegistryUnavailableError(f"registry unreachable fetching schema id {schema_id}: {exc}") from exc
        if (registered.schema_type or "AVRO") != "AVRO":
            raise DecodeError(f"schema id {schema_id} is a {registered.schema_type} schema, not Avro")
        try:
            schema = json.loads(registered.schema_str)
            version = make_version(schema, current=False)
        except (ValueError, SyncflowError) as exc:
            raise DecodeError(f"schema id {schema_id} is not a usable Avro record schema: {exc}") from exc
        local = self.catalogue.find_fingerprint(version.fingerprint)
        return local if local is not None else version


class FramedCodec:
    """Reads both framings in one deployment, told apart by their first bytes (upstream
    producers choose theirs): 0x00 is the Confluent wire format (resolved through the
    registry), C3 01 Avro single-object encoding (resolved from the schema files). Writes
    with the registry's framing when one is configured, else single-object."""

    def __init__(self, single: SingleObjectCodec, registry: RegistryCodec | None = None):
        self.single, self.registry = single, registry

    def encode(self, schema_name: str, record: dict, *, topic: str | None = None) -> bytes:
        return (self.registry or self.single).encode(schema_name, record, topic=topic)

    def decode(self, data: bytes, *, topic: str | None = None, reader: str | None = None) -> DecodedRecord:
        if isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:1]) == bytes([CONFLUENT_MAGIC]):
            if self.registry is not None:
                return self.registry.decode(data, topic=topic, reader=reader)
            what = f"record on {topic}" if topic else "record"
            schema_id = int.from_bytes(bytes(data[1:5]), "big") if len(data) >= CONFLUENT_HEADER.size else None
            raise DecodeError(
                f"{what}: Confluent wire format (magic byte 0x00, schema id {schema_id}) but no schema registry "
                "is configured (settings.schema_registry_url); only single-object encoding can be read here"
            )
        return self.single.decode(data, topic=topic, reader=reader)


def registry_client(url: str, security: SchemaRegistrySecuritySettings | None = None) -> SchemaRegistryClient:
    """A confluent-kafka SchemaRegistryClient (`mock://` gives its in-memory stand-in), with
    the basic auth and TLS of `security` (settings.schema_registry_security)."""
    if url.startswith("mock://"):
        return SchemaRegistryClient.new_client({"url": url})
    return SchemaRegistryClient(registry_config(url, security))


def codec_for(settings: Settings, catalogue: SchemaCatalogue | None = None) -> AvroCodec:
    """A FramedCodec: both framings read; written with the registry when one is configured."""
    catalogue = catalogue if catalogue is not None else SchemaCatalogue.load(settings.schemas_dir)
    registry = RegistryCodec(catalogue, registry_client(settings.schema_registry_url, settings.schema_registry_security)) if settings.schema_registry_url else None
    return FramedCodec(SingleObjectCodec(catalogue), registry)


__all__ = [
    "AvroCodec",
    "DecodedRecord",
    "FramedCodec",
    "RegistryCodec",
    "SingleObjectCodec",
    "codec_for",
    "registry_client",
]
