"""Value conversions used by the rule types: text to dates, timestamps, numbers, booleans.

Each raises RuleFailure with a reason an operator can read; the engine turns it into a
FieldError naming the rule. Values that already have the wanted type pass through, since
Avro-decoded records often carry real ints, booleans and datetimes.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

UTC = timezone.utc
ISO = "iso"
EPOCH_MS = "epoch_ms"
EPOCH_S = "epoch_s"


class RuleFailure(Exception):
    """A rule refused a value. Internal to the engine: it never escapes transform()."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# strptime formats that fromisoformat reads identically for text of the given length (fast path)
_ISO_EQUIVALENT = {"%Y-%m-%dT%H:%M:%S": 19, "%Y-%m-%d %H:%M:%S": 19, "%Y-%m-%d": 10}


def _iso_shaped(text: str, fmt: str) -> bool:
    return _ISO_EQUIVALENT.get(fmt) == len(text) and text[4] == "-" and text[7] == "-" and (
        len(text) == 10 or (text[10] == fmt[8] and text[13] == ":" and text[16] == ":"))


def parse_date(value: object, formats: tuple[str, ...]) -> date:
    """A date from a date, a datetime or text in one of `formats` ('iso' = YYYY-MM-DD)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for fmt in formats:
            try:
                if fmt == ISO or _iso_shaped(text, fmt):
                    return date.fromisoformat(text)
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
    raise RuleFailure(f"is not a date in format {' or '.join(formats)}")


def parse_timestamp(value: object, formats: tuple[str, ...]) -> datetime:
    """A datetime from a datetime, epoch numbers or text in one of `formats`.

    Naive results stay naive here; the `utc` normalize rule gives them their time zone.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for fmt in formats:
            if fmt in (EPOCH_MS, EPOCH_S):
                seconds = value / 1000 if fmt == EPOCH_MS else value
                try:
                    return datetime.fromtimestamp(seconds, UTC)
                except (OverflowError, OSError, ValueError):
                    break
    if isinstance(value, str):
        text = value.strip()
        for fmt in formats:
            try:
                if fmt == ISO or _iso_shaped(text, fmt):
                    return datetime.fromisoformat(text)
                if fmt in (EPOCH_MS, EPOCH_S):
                    continue
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
    raise RuleFailure(f"is not a timestamp in format {' or '.join(formats)}")


def parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise RuleFailure("is a boolean, not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip().replace(",", ""))
        except ValueError:
            pass
    raise RuleFailure("is not a whole number")


def parse_float(value: object) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().replace(",", ""))
        except ValueError:
            raise RuleFailure("is not a number") from None
    else:
        raise RuleFailure("is not a number")
    if not math.isfinite(result):
        raise RuleFailure("is not a finite number")
    return result


def parse_decimal(value: object, places: int, multiply: Decimal | None = None) -> Decimal:
    """A Decimal with exactly `places` digits after the point (the canonical scale)."""
    if isinstance(value, bool):
        raise RuleFailure("is a boolean, not an amount")
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, (int, Decimal)):
            number = Decimal(value)
        elif isinstance(value, str):
            number = Decimal(value.strip().replace(",", "").lstrip("$"))
        else:
            raise RuleFailure("is not an amount")
        if not number.is_finite():
            raise RuleFailure("is not a finite amount")
        if multiply is not None:
            number *= multiply
        return number.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:
        raise RuleFailure("is not an amount") from None


def fold(value: object) -> object:
    """The lookup form of a value: text trimmed, inner spaces collapsed, case folded."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return value
