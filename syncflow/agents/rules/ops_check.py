"""Rule types of the normalize and validate steps: standard forms (trim, case, E.164,
UTC) and business checks (required, formats, allowed values, ranges)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timezone

from syncflow.agents.rules.formats import SUPPORTED_PHONE_REGIONS, is_e164, is_email, to_e164
from syncflow.agents.rules.ops_base import BuildContext, Op, RecordState, as_list, check, no_args
from syncflow.agents.rules.values import RuleFailure, fold

UTC = timezone.utc


def trim(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def null_if_empty(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def text_op(func: Callable[[str], str]) -> Callable[[object], object]:
    return lambda value: func(value) if isinstance(value, str) else value


def build_phone(args: object, ctx: BuildContext) -> Op:
    region = "US" if args in (None, True) else args
    if region not in SUPPORTED_PHONE_REGIONS:
        raise ValueError(f"'phone' default region {region!r} is not supported (supported: {', '.join(SUPPORTED_PHONE_REGIONS)})")

    def op(value: object, state: RecordState) -> object:
        result = to_e164(str(value), region) if isinstance(value, (str, int)) else None
        if result is None:
            raise RuleFailure(f"is not a valid phone number ({region} default)")
        return result
    return op


def build_utc(args: object, ctx: BuildContext) -> Op:
    """Times without an offset are read in the record's time zone (its timezone field, or
    the source's default), then everything becomes UTC, to the millisecond (Avro's unit)."""
    no_args("utc")(args)

    def op(value: object, state: RecordState) -> object:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=state.timezone)
            value = value.astimezone(UTC)
            return value.replace(microsecond=value.microsecond // 1000 * 1000)
        if isinstance(value, date):
            return value
        raise RuleFailure("is not a timestamp")
    return op


# -- validate ---------------------------------------------------------------------------
def build_required(args: object, ctx: BuildContext) -> Op:
    if args is False:
        return lambda value, state: value
    no_args("required")(args)

    def op(value: object, state: RecordState) -> object:
        if value is None or value == "":
            raise RuleFailure("is required")
        return value
    return op


def build_required_if(args: object, ctx: BuildContext) -> Op:
    """`required_if: {location_type: [unit]}`: required when the other fields match."""
    if not isinstance(args, dict) or not args:
        raise ValueError("'required_if' needs {field: values}")
    conditions = []
    for name, wanted in args.items():
        ctx.check_field(name)
        conditions.append((name, {fold(w) for w in as_list(wanted)}))

    def op(value: object, state: RecordState) -> object:
        if value in (None, "") and all(fold(state.values.get(n)) in w for n, w in conditions):
            raise RuleFailure("is required when " + ", ".join(f"{n} is {sorted(map(str, w))}" for n, w in conditions))
        return value
    return op


def build_email(args: object, ctx: BuildContext) -> Op:
    no_args("email")(args)
    return check(lambda v: isinstance(v, str) and is_email(v), "is not a valid e-mail address")


def build_e164(args: object, ctx: BuildContext) -> Op:
    no_args("phone")(args)
    return check(lambda v: isinstance(v, str) and is_e164(v), "is not an E.164 phone number")


def build_regex(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, str):
        raise ValueError("'regex' needs a pattern string")
    try:
        pattern = re.compile(args)
    except re.error as exc:
        raise ValueError(f"bad regex {args!r}: {exc}") from None
    return check(lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None, f"does not match {args}")


def build_allowed(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, list) or not args:
        raise ValueError("'allowed' needs a list of values")
    allowed = set(args)
    listed = ", ".join(map(str, args))
    return check(lambda v: _hashable_in(v, allowed), f"is not one of {listed}")


def _hashable_in(value: object, allowed: set) -> bool:
    try:
        return value in allowed
    except TypeError:
        return False


def build_range(args: object, ctx: BuildContext) -> Op:
    """`range: {min: 1, max: 10}` (either bound may be left out)."""
    if not isinstance(args, dict) or not args or set(args) - {"min", "max"}:
        raise ValueError("'range' needs min and/or max")
    low, high = args.get("min"), args.get("max")
    for bound in (low, high):
        if bound is not None and not isinstance(bound, (int, float, date)):
            raise ValueError(f"'range' bound {bound!r} is not a number or a date")

    def test(value: object) -> bool:
        try:
            return (low is None or value >= low) and (high is None or value <= high)  # type: ignore[operator]
        except TypeError:
            return False
    return check(test, f"is not within {low if low is not None else '…'}..{high if high is not None else '…'}")


def build_length(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, dict) or not args or set(args) - {"min", "max"}:
        raise ValueError("'length' needs min and/or max")
    low, high = args.get("min", 0), args.get("max")
    return check(lambda v: isinstance(v, str) and low <= len(v) and (high is None or len(v) <= high),
                  f"length is not within {low}..{high if high is not None else '…'}")


def build_not_before(args: object, ctx: BuildContext) -> Op:
    """`not_before: requested_at`: e.g. completion cannot precede the request."""
    if not isinstance(args, str):
        raise ValueError("'not_before' needs a field name")
    ctx.check_field(args)

    def op(value: object, state: RecordState) -> object:
        other = state.values.get(args)
        try:
            if other is not None and value < other:  # type: ignore[operator]
                raise RuleFailure(f"is before {args} ({other})")
        except TypeError:
            pass
        return value
    return op


