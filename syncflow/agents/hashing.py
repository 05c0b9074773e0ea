"""Change detection: one hash per decoded source record, equal whenever two versions of a
record differ only in formatting.

Ignored: key order, surrounding whitespace in text, a missing key versus None (and versus
empty text), how a number is written (1, 1.0 and Decimal('1.00') are equal), and the time
zone a datetime is written in (the same instant hashes the same). List order counts."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time, timezone
from decimal import Decimal

UTC = timezone.utc
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


def content_hash(record: dict) -> str:
    """sha256 hex of the record's canonical form."""
    return hashlib.sha256(_dumps(_canonical(record)).encode()).hexdigest()


def _canonical(value: object) -> object:
    kind = type(value)
    if kind is str:
        return value.strip() or None  # type: ignore[union-attr]
    if kind is dict:
        out = {}
        for key, item in value.items():  # type: ignore[union-attr]
            item = _canonical(item)
            if item is not None:
                out[str(key)] = item
        return out
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value  # type: ignore[union-attr]
    if kind is list or kind is tuple:
        return [_canonical(item) for item in value]  # type: ignore[union-attr]
    return _other(value)


def _other(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return "@t" + value.isoformat()
    if isinstance(value, date):
        return "@d" + value.isoformat()
    if isinstance(value, time):
        return "@h" + value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _canonical(float(value))
    if isinstance(value, str):
        return _canonical(str(value))
    if isinstance(value, dict):
        return _canonical(dict(value))
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return "@b" + bytes(value).hex()
    return repr(value)
