"""The source systems' native record schemas and what syncflow needs to know about each
record: its source id, its last-modified time, and whether it fits its schema (with
field-level reasons when it does not)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from syncflow.errors import FieldError, UnknownEntityError
from syncflow.streams.schemas import read_schema_file

Record = dict[str, Any]

ENTITY_RECORD = {"location": "Location", "resident": "Resident", "service_request": "ServiceRequest",
                 "attachment": "Attachment"}
SOURCE_ENTITIES: dict[str, tuple[str, ...]] = {
    "yardi": ("location", "resident", "service_request"),
    "realpage": ("location", "resident", "service_request", "attachment"),
    "insight": ("location", "resident", "service_request"),
    "lessen360": ("service_request", "attachment"),
}
# Where each record keeps its source id: a path of field names.
SOURCE_ID_PATH: dict[tuple[str, str], tuple[str, ...]] = {
    ("yardi", "location"): ("LocationId",),
    ("yardi", "resident"): ("Identification", "IDValue"),
    ("yardi", "service_request"): ("ServiceRequestId",),
    ("realpage", "location"): ("locationId",),
    ("realpage", "resident"): ("residentId",),
    ("realpage", "service_request"): ("workOrderId",),
    ("realpage", "attachment"): ("attachmentId",),
    ("insight", "location"): ("location_id",),
    ("insight", "resident"): ("occupant_id",),
    ("insight", "service_request"): ("ticket_id",),
    ("lessen360", "service_request"): ("workOrderId",),
    ("lessen360", "attachment"): ("attachmentId",),
}
MODIFIED_FIELD = {"yardi": "UpdateDate", "realpage": "lastModifiedDate", "insight": "updated_at",
                  "lessen360": "updatedAtMs"}


def schema_name(source: str, entity_type: str) -> str:
    """Full Avro name, e.g. io.syncflow.yardi.ServiceRequest."""
    check_entity(source, entity_type)
    return f"io.syncflow.{source}.{ENTITY_RECORD[entity_type]}"


def check_entity(source: str, entity_type: str) -> None:
    if entity_type not in SOURCE_ENTITIES.get(source, ()):
        raise UnknownEntityError(f"{source} provides no {entity_type} records")


@lru_cache(maxsize=64)
def load_schema(schemas_dir: Path, source: str, entity_type: str) -> dict[str, Any]:
    """The .avsc of a source entity as plain JSON."""
    check_entity(source, entity_type)
    return read_schema_file(schemas_dir / "sources" / source / f"{ENTITY_RECORD[entity_type]}.avsc")


def source_id_of(source: str, entity_type: str, record: Record) -> str:
    value: Any = record
    for name in SOURCE_ID_PATH[(source, entity_type)]:
        value = value[name]
    return str(value)


def modified_ms_of(source: str, record: Record) -> int:
    """The record's last-modified time as UTC epoch milliseconds, read the way its source
    writes it. Raises ValueError for a time that cannot be read."""
    value = record[MODIFIED_FIELD[source]]
    if source == "lessen360":
        return int(value)
    if source == "yardi":
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    elif source == "realpage":
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=ZoneInfo(record["timeZone"]))
    else:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset")
    return int(parsed.timestamp() * 1000)


# -- shape check ---------------------------------------------------------------------
def check_record(schema: dict[str, Any], record: object) -> list[FieldError]:
    """Every way `record` does not fit `schema`, as field errors (empty when it fits)."""
    problems: list[tuple[str, object, str]] = []
    _check(schema, record, "", {}, problems)
    return [FieldError("schema", path or "(record)", value, reason) for path, value, reason in problems]


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _fits_primitive(name: str, value: object) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
    if name == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if name in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "bytes":
        return isinstance(value, bytes)
    return isinstance(value, str)


def _type_label(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return " or ".join(_type_label(s) for s in schema)
    return str(schema.get("name") or schema.get("type"))


def _check(schema: Any, value: object, path: str, named: dict[str, Any], out: list[tuple[str, object, str]]) -> None:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            if not _fits_primitive(schema, value):
                reason = "is required" if value is None else f"expected {schema}, got {type(value).__name__}"
                out.append((path, value, reason))
            return
        schema = named[schema]
    if isinstance(schema, list):
        for branch in schema:
            trial: list[tuple[str, object, str]] = []
            _check(branch, value, path, named, trial)
            if not trial:
                return
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1 and value is not None:
            _check(branches[0], value, path, named, out)  # say what is wrong inside
        else:
            out.append((path, value, f"expected {_type_label(schema)}, got {type(value).__name__}"))
        return
    kind = schema["type"]
    if kind in _PRIMITIVES:
        _check(kind, value, path, named, out)
    elif kind == "record":
        named[schema["name"]] = schema
        if not isinstance(value, dict):
            out.append((path, value, "is required" if value is None else f"expected a {schema['name']} record"))
            return
        names = set()
        for f in schema["fields"]:
            names.add(f["name"])
            sub = f"{path}.{f['name']}" if path else f["name"]
            if f["name"] not in value:
                if "default" not in f:
                    out.append((sub, None, "is required"))
                continue
            _check(f["type"], value[f["name"]], sub, named, out)
        for extra in sorted(set(value) - names):
            out.append((f"{path}.{extra}" if path else extra, value[extra], f"is not a field of {schema['name']}"))
    elif kind == "array":
        if not isinstance(value, list):
            out.append((path, value, "expected a list"))
            return
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{path}[{i}]", named, out)
    elif kind == "map":
        if not isinstance(value, dict):
            out.append((path, value, "expected an object"))
            return
        for k, item in value.items():
            _check(schema["values"], item, f"{path}.{k}", named, out)
    elif kind == "enum":
        named[schema["name"]] = schema
        if value not in schema["symbols"]:
            out.append((path, value, f"expected one of {', '.join(schema['symbols'])}"))
    else:
        out.append((path, value, f"unsupported schema type {kind}"))


def with_defaults(schema: dict[str, Any], record: Record) -> Record:
    """The record with every absent field set to its default (what a reader would see), so
    what syncflow reports equals what comes back from Kafka."""
    out = dict(record)
    for f in schema["fields"]:
        if f["name"] not in out and "default" in f:
            out[f["name"]] = f["default"]
        ftype = f["type"]
        value = out.get(f["name"])
        for branch in ftype if isinstance(ftype, list) else [ftype]:
            if isinstance(branch, dict) and branch.get("type") == "record" and isinstance(value, dict):
                out[f["name"]] = with_defaults(branch, value)
            elif isinstance(branch, dict) and branch.get("type") == "array" and isinstance(value, list) \
                    and isinstance(branch["items"], dict) and branch["items"].get("type") == "record":
                out[f["name"]] = [with_defaults(branch["items"], v) if isinstance(v, dict) else v for v in value]
    return out
