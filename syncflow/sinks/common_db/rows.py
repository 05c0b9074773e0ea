"""Canonical entity dicts -> typed column values of the processed entity tables. Plain
functions: the canonical schema (avro_schemas/canonical) names the fields, the table
models name the columns, and only the overlap is copied."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, Table
from sqlalchemy.sql.type_api import TypeEngine

from syncflow.sinks.common_db.models import ENTITY_MODELS, PARENT_REFERENCES, ResidentialDetails

BOOKKEEPING = frozenset(
    {"entity_id", "current_version", "deleted", "placeholder", "created_date", "modified_date"}
)
_EPOCH_DAY = date(1970, 1, 1)


def to_datetime(value: Any) -> datetime | None:
    """datetime, epoch milliseconds or ISO-8601 text -> aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def to_date(value: Any) -> date | None:
    """date, days since the epoch (Avro `date`) or ISO text -> date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int):
        return _EPOCH_DAY + timedelta(days=value)
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a date: {value!r}")


def to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise TypeError(f"not a number: {value!r}") from exc


def coerce(sql_type: TypeEngine[Any], value: Any) -> Any:
    """A canonical value as its column takes it; TypeError/ValueError when it cannot be."""
    if value is None:
        return None
    if isinstance(sql_type, DateTime):
        return to_datetime(value)
    if isinstance(sql_type, Date):
        return to_date(value)
    if isinstance(sql_type, Numeric):
        return to_decimal(value)
    if isinstance(sql_type, Integer):
        return int(value)
    if isinstance(sql_type, Boolean):
        return bool(value)
    return str(value) if not isinstance(value, str) else value


def entity_table(entity_type: str) -> Table:
    return ENTITY_MODELS[entity_type].__table__  # type: ignore[attr-defined,no-any-return]


def data_columns(entity_type: str) -> list[str]:
    """The columns a canonical record fills (not the bookkeeping ones)."""
    return [c.name for c in entity_table(entity_type).columns if c.name not in BOOKKEEPING]


def entity_row(entity_type: str, entity: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for one canonical entity; fields the table does not have are ignored
    (they live in the version snapshot)."""
    table = entity_table(entity_type)
    return {name: coerce(table.c[name].type, entity.get(name)) for name in data_columns(entity_type)}


def residential_row(location_id: str, entity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The residential_details row of a location, or None when it has no residential part."""
    details = entity.get("residential")
    if not isinstance(details, Mapping):
        return None
    table = ResidentialDetails.__table__
    row = {"location_id": location_id}
    for column in table.columns:
        if column.name not in ("location_id", "modified_date"):
            row[column.name] = coerce(column.type, details.get(column.name))
    return row


def parent_ids(entity_type: str, entity: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, str]:
    """{foreign-key column: parent canonical id} of one entity, from its fields or, failing
    that, its references."""
    out: dict[str, str] = {}
    for column, parent_type in PARENT_REFERENCES[entity_type]:
        value = entity.get(column)
        if value is None and column != "parent_location_id":
            value = references.get(parent_type)
        if value:
            out[column] = str(value)
    return out
