"""The canonical Avro schemas as the engine sees them: which fields exist, their kinds,
defaults, and a final check that an entity really matches its schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import fastavro
from fastavro.validation import validate

from syncflow.errors import ConfigError
from syncflow.streams.schemas import read_schema_file

ENTITY_SCHEMA_FILES: dict[str, str] = {
    "location": "Location.avsc",
    "resident": "Resident.avsc",
    "service_request": "ServiceRequest.avsc",
    "attachment": "Attachment.avsc",
}
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "avro_schemas" / "canonical"


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CanonicalField:
    """One field of a canonical schema, reduced to what the rules need."""

    name: str
    kind: str  # string | int | long | double | boolean | timestamp | date | decimal | enum | record
    nullable: bool
    default: object  # NO_DEFAULT when the schema gives none
    symbols: tuple[str, ...] = ()
    scale: int | None = None
    subfields: tuple["CanonicalField", ...] = ()
    avro_type: object = None  # a one-field record schema, parsed, for pinpointing failures

    @property
    def required(self) -> bool:
        """A value must come from the rules: not nullable and no default."""
        return not self.nullable and self.default is NO_DEFAULT

    def filler(self) -> object:
        """A neutral value of the right type, used only for lenient delete records."""
        return {"string": "", "int": 0, "long": 0, "double": 0.0, "boolean": False,
                "timestamp": EPOCH, "date": date(1970, 1, 1), "decimal": Decimal(0),
                "enum": self.symbols[0] if self.symbols else ""}.get(self.kind)


@dataclass(frozen=True)
class CanonicalSchema:
    entity_type: str
    name: str
    fields: tuple[CanonicalField, ...]
    parsed: dict

    def target_names(self) -> set[str]:
        """Field names a rule may write: top-level ones and `record.subfield` ones."""
        names = {f.name for f in self.fields}
        for f in self.fields:
            names.update(f"{f.name}.{sub.name}" for sub in f.subfields)
        return names

    def field(self, name: str) -> CanonicalField | None:
        head, _, tail = name.partition(".")
        for f in self.fields:
            if f.name == head:
                if not tail:
                    return f
                return next((s for s in f.subfields if s.name == tail), None)
        return None

    def matches(self, entity: dict) -> bool:
        try:
            return bool(validate(entity, self.parsed, raise_errors=False))
        except (ValueError, TypeError, AttributeError, OverflowError):
            return False

    def failing_fields(self, entity: dict) -> list[CanonicalField]:
        """Which fields make `entity` fail its schema (called only after matches() is False)."""
        failing = []
        for f in self.fields:
            try:
                ok = validate({f.name: entity.get(f.name)}, f.avro_type, raise_errors=False)
            except (ValueError, TypeError, AttributeError, OverflowError):
                ok = False
            if not ok:
                failing.append(f)
        return failing


def load_canonical_schemas(directory: Path = DEFAULT_SCHEMAS_DIR) -> dict[str, CanonicalSchema]:
    """Every canonical entity schema, keyed by entity type."""
    schemas = {}
    for entity_type, file_name in ENTITY_SCHEMA_FILES.items():
        path = directory / file_name
        raw = read_schema_file(path)
        try:
            parsed = fastavro.parse_schema(raw)
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise ConfigError(f"{path}: cannot read canonical schema: {exc}") from exc
        fields = tuple(_field(f, raw.get("namespace", "")) for f in raw["fields"])
        schemas[entity_type] = CanonicalSchema(entity_type, raw["name"], fields, parsed)
    return schemas


def _field(spec: dict, namespace: str) -> CanonicalField:
    avro_type = spec["type"]
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    nullable = "null" in branches
    (main,) = [b for b in branches if b != "null"] or ["null"]
    kind, symbols, scale, subfields = _kind(main, namespace)
    default = spec.get("default", NO_DEFAULT)
    # A one-field record around the field, so named types (enums, records) parse on their own.
    wrapper = {"type": "record", "name": f"Check_{spec['name']}", "namespace": namespace, "fields": [spec]}
    parsed_type = fastavro.parse_schema(wrapper)
    return CanonicalField(spec["name"], kind, nullable, default, symbols, scale, subfields, parsed_type)


def _kind(avro_type: object, namespace: str) -> tuple[str, tuple[str, ...], int | None, tuple[CanonicalField, ...]]:
    if isinstance(avro_type, str):
        return ("string" if avro_type == "string" else avro_type), (), None, ()
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return "timestamp", (), None, ()
        if logical == "date":
            return "date", (), None, ()
        if logical == "decimal":
            return "decimal", (), int(avro_type.get("scale", 0)), ()
        if avro_type.get("type") == "enum":
            return "enum", tuple(avro_type["symbols"]), None, ()
        if avro_type.get("type") == "record":
            subs = tuple(_field(f, avro_type.get("namespace", namespace)) for f in avro_type["fields"])
            return "record", (), None, subs
        return _kind(avro_type.get("type"), namespace)
    raise ConfigError(f"unsupported canonical field type {avro_type!r}")
