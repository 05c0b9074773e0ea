"""What the common database can hold, read from the table models (the one source of truth),
so a record that PostgreSQL would refuse is rejected before the transaction as a validation
error naming its field: over-long text, NUL characters and lone surrogates (no PostgreSQL
text or JSONB value may hold them), numbers out of their column's range, dates that do not
parse. The database's own refusal stays as the last line (see the sync-in handler)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import BigInteger, Integer, Numeric, String
from sqlalchemy.sql.type_api import TypeEngine

from syncflow.errors import FieldError
from syncflow.sinks.common_db.models import DataVersion, ResidentialDetails, SyncMasterData
from syncflow.sinks.common_db.rows import coerce, data_columns, entity_table, parent_ids
from syncflow.model import EntityRecord

RULE = "column-fits"
_INT_RANGE = {Integer: 2**31, BigInteger: 2**63}


@dataclass(frozen=True)
class ColumnLimit:
    """One column's bounds: `max_length` for text, `max_abs` for numbers (exclusive)."""

    max_length: int | None = None
    max_abs: Decimal | int | None = None


def column_limit(sql_type: TypeEngine[Any]) -> ColumnLimit:
    if isinstance(sql_type, String) and sql_type.length:
        return ColumnLimit(max_length=sql_type.length)
    if isinstance(sql_type, Numeric) and not isinstance(sql_type, (Integer,)) and sql_type.precision is not None:
        return ColumnLimit(max_abs=Decimal(10) ** (sql_type.precision - (sql_type.scale or 0)))
    for kind in (BigInteger, Integer):  # BigInteger first: it is an Integer too
        if isinstance(sql_type, kind):
            return ColumnLimit(max_abs=_INT_RANGE[kind])
    return ColumnLimit()


def _length(column: Any) -> int:
    return column.type.length  # type: ignore[no-any-return]


# identity columns every record writes (master row, version row, entity row)
ENTITY_ID_MAX = _length(SyncMasterData.__table__.c.entity_id)
SOURCE_ID_MAX = _length(SyncMasterData.__table__.c.source_id)
SOURCE_SYSTEM_MAX = _length(SyncMasterData.__table__.c.source_system)
TRACE_ID_MAX = _length(DataVersion.__table__.c.trace_id)


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store this text (NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character, which the database cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid Unicode text"
    return None


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) for every string in a nested value, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield child, key
            yield from _walk(item, child)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def value_problem(value: Any, limit: ColumnLimit) -> str | None:
    """Why a coerced column value exceeds its column, or None."""
    if value is None:
        return None
    if limit.max_length is not None and isinstance(value, str) and len(value) > limit.max_length:
        return f"has {len(value)} characters; the column holds at most {limit.max_length}"
    if limit.max_abs is not None and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        if isinstance(value, Decimal) and not value.is_finite():
            return "is not a finite number"
        if abs(value) >= limit.max_abs:
            return f"is out of range: the column holds numbers below {limit.max_abs} in magnitude"
    return None


_COERCE_ERRORS = (TypeError, ValueError, OverflowError, ArithmeticError)
Columns = tuple[tuple[str, TypeEngine[Any], ColumnLimit], ...]


@lru_cache(maxsize=None)
def _entity_columns(entity_type: str) -> Columns:
    table = entity_table(entity_type)
    return tuple((n, table.c[n].type, column_limit(table.c[n].type)) for n in data_columns(entity_type))


@lru_cache(maxsize=None)
def _residential_columns() -> Columns:
    table = ResidentialDetails.__table__
    skip = ("location_id", "modified_date")
    return tuple((c.name, c.type, column_limit(c.type)) for c in table.columns if c.name not in skip)


def _columns(values: Mapping[str, Any], columns: Columns, prefix: str) -> Iterator[FieldError]:
    """Each column value as the table would take it: does it coerce, and does it fit."""
    for name, column_type, limit in columns:
        raw = values.get(name)
        if raw is None:
            continue
        try:
            value = coerce(column_type, raw)
        except _COERCE_ERRORS as exc:
            yield FieldError(RULE, prefix + name, raw, f"is not a valid {column_type}: {exc}")
            continue
        if problem := value_problem(value, limit):
            yield FieldError(RULE, prefix + name, raw, problem)


def _rows(record: EntityRecord) -> Iterator[FieldError]:
    """The typed rows the record writes (entity row, residential details of a location)."""
    yield from _columns(record.entity, _entity_columns(record.entity_type), "")
    details = record.entity.get("residential")
    if record.entity_type == "location" and isinstance(details, Mapping):
        yield from _columns(details, _residential_columns(), "residential.")


def record_problems(record: EntityRecord, entity_text: bytes | None = None) -> list[FieldError]:
    """Every reason the common database would refuse this record, each naming its field.
    `entity_text`: the record's `entity_json`, when the caller has it already."""
    problems: list[FieldError] = []
    for field, value, limit in (
        ("entity_id", record.entity_id, ENTITY_ID_MAX),
        ("source_id", record.source_id, SOURCE_ID_MAX),
        ("source_system", record.source_system, SOURCE_SYSTEM_MAX),
        ("trace_id", record.trace_id, TRACE_ID_MAX),
    ):
        if value is not None and len(value) > limit:
            problems.append(FieldError(RULE, field, value, f"has {len(value)} characters; at most {limit} fit"))
    for column, parent in parent_ids(record.entity_type, record.entity, record.references).items():
        if record.entity.get(column) is None and len(parent) > ENTITY_ID_MAX:  # from references: no column check
            problems.append(FieldError(RULE, column, parent, f"has {len(parent)} characters; at most {ENTITY_ID_MAX} fit"))
    if _may_hold_bad_text(record, entity_text if entity_text is not None else entity_json(record.entity)):
        texts = [*_walk(record.entity, ""), *_walk(record.references, "references"), ("source_id", record.source_id)]
        if record.trace_id is not None:
            texts.append(("trace_id", record.trace_id))
        for path, text in texts:
            if problem := text_problem(text):
                problems.append(FieldError(RULE, path, text, problem))
    problems += _rows(record)
    return problems


def entity_json(entity: Mapping[str, Any]) -> bytes | None:
    """The entity as compact UTF-8 JSON (other values as their str()), in one C-speed pass;
    None when it cannot be written (a lone surrogate, an integer past 64 bits). Sync-in
    reads both the NUL check below and the change event's size bound from it."""
    try:
        return orjson.dumps(entity, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return None


def _may_hold_bad_text(record: EntityRecord, entity_text: bytes | None) -> bool:
    """JSON escapes NUL as \\u0000 and cannot write a lone surrogate: one pass over the
    entity's text finds both (the few other strings are checked as they are). Only a
    suspect record is walked field by field to name the culprit."""
    if entity_text is None or b"\\u0000" in entity_text:
        return True
    others = [text for _, text in _walk(record.references, "")] + [record.source_id, record.trace_id or ""]
    return any(text_problem(text) is not None for text in others)
