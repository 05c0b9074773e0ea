"""The rule types each step offers. A rule type turns its arguments from the rules file into
a plain callable once, at load: `op(value, state) -> new value`, raising RuleFailure when the
value breaks the rule. Bad arguments raise ValueError, which the loader reports as a
ConfigError with the rule's place in the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from syncflow.agents.rules.formats import SUPPORTED_PHONE_REGIONS, is_e164, is_email, to_e164
from syncflow.agents.rules.identity import IdentityRule
from syncflow.agents.rules.values import (
    EPOCH_MS, EPOCH_S, ISO, RuleFailure, fold, parse_date, parse_decimal, parse_float, parse_int,
    parse_timestamp,
)

UTC = timezone.utc


class RecordState:
    """What the rules of one record share: its source, the native record, the working
    values (canonical and `_scratch` fields), the references found, its time zone."""

    __slots__ = ("source", "native", "values", "references", "timezone")

    def __init__(self, source: str, native: dict, timezone_: ZoneInfo | timezone):
        self.source = source
        self.native = native
        self.values: dict[str, object] = {}
        self.references: dict[str, str] = {}
        self.timezone = timezone_


Op = Callable[[object, RecordState], object]


@dataclass(frozen=True)
class BuildContext:
    """What a rule type may consult while compiling its arguments."""

    identities: dict[str, IdentityRule]
    check_field: Callable[[str], None]  # raises ValueError for a field no rule may name


@dataclass(frozen=True)
class RuleType:
    build: Callable[[object, BuildContext], Op]
    takes_none: bool  # run even when the value is None (otherwise None passes untouched)
    summary: str


# -- helpers ----------------------------------------------------------------------------
def _strings(args: object, what: str) -> tuple[str, ...]:
    items = args if isinstance(args, list) else [args]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"{what} must be a string or a list of strings, not {args!r}")
    return tuple(items)


def _no_args(name: str) -> Callable[[object], None]:
    def check(args: object) -> None:
        if args not in (None, True):
            raise ValueError(f"'{name}' takes no arguments (write it as '{name}' or '{name}: true')")
    return check


def _simple(name: str, func: Callable[[object], object]) -> Callable[[object, BuildContext], Op]:
    def build(args: object, ctx: BuildContext) -> Op:
        _no_args(name)(args)

        def op(value: object, state: RecordState, func: Callable[[object], object] = func) -> object:
            return func(value)
        return op
    return build


# -- transform --------------------------------------------------------------------------
def _build_map(args: object, ctx: BuildContext) -> Op:
    """Source vocabulary -> canonical. Keys match trimmed and case-insensitively.
    `{values: {...}, other: keep|<value>}` decides what happens to unlisted values
    (default: the value is refused)."""
    other: object = _REFUSE
    if isinstance(args, dict) and set(args) <= {"values", "other"} and "values" in args:
        other = args.get("other", _REFUSE)
        args = args["values"]
    if not isinstance(args, dict) or not args:
        raise ValueError("'map' needs a mapping of source values to canonical values")
    table = {fold(k): v for k, v in args.items()}
    listed = ", ".join(str(k) for k in args)

    def op(value: object, state: RecordState) -> object:
        try:
            return table[fold(value)]
        except (KeyError, TypeError):
            if other is _REFUSE:
                raise RuleFailure(f"is not a known value (known: {listed})") from None
            return value if other == "keep" else other
    return op


_REFUSE = object()


def _formats(args: object, what: str) -> tuple[str, ...]:
    formats = _strings(args, f"'{what}' format")
    for fmt in formats:
        if fmt not in (ISO, EPOCH_MS, EPOCH_S) and "%" not in fmt:
            raise ValueError(f"'{what}' format {fmt!r} is not 'iso', 'epoch_ms', 'epoch_s' or a strptime format")
    return formats


def _build_date(args: object, ctx: BuildContext) -> Op:
    formats = _formats(args, "date")
    return lambda value, state: parse_date(value, formats)


def _build_timestamp(args: object, ctx: BuildContext) -> Op:
    formats = _formats(args, "timestamp")
    return lambda value, state: parse_timestamp(value, formats)


def _build_decimal(args: object, ctx: BuildContext) -> Op:
    """`decimal: 2` or `decimal: {places: 2, multiply: 0.01}` (e.g. cents to dollars)."""
    if isinstance(args, int) and not isinstance(args, bool):
        args = {"places": args}
    if not isinstance(args, dict) or not isinstance(args.get("places"), int) or set(args) - {"places", "multiply"}:
        raise ValueError("'decimal' needs places: <int> and optionally multiply: <number>")
    places = args["places"]
    multiply = Decimal(str(args["multiply"])) if "multiply" in args else None
    return lambda value, state: parse_decimal(value, places, multiply)


def _build_bool(args: object, ctx: BuildContext) -> Op:
    """`bool: {true: [Y, Yes, 1], false: [N, No, 0]}`; real booleans pass through."""
    if not isinstance(args, dict) or set(args) != {True, False}:
        raise ValueError("'bool' needs true: [values] and false: [values]")
    table = {fold(v): True for v in _as_list(args[True])}
    table.update({fold(v): False for v in _as_list(args[False])})

    def op(value: object, state: RecordState) -> object:
        if isinstance(value, bool):
            return value
        try:
            return table[fold(value)]
        except (KeyError, TypeError):
            raise RuleFailure("is not a known yes/no value") from None
    return op


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _build_join(args: object, ctx: BuildContext) -> Op:
    """Combine working fields: `join: [_first, _last]` or `{fields: [...], sep: ', '}`."""
    if isinstance(args, list):
        args = {"fields": args}
    if not isinstance(args, dict) or set(args) - {"fields", "sep"}:
        raise ValueError("'join' needs fields: [names] and optionally sep: <text>")
    fields = _strings(args.get("fields"), "'join' fields")
    for name in fields:
        ctx.check_field(name)
    sep = str(args.get("sep", " "))

    def op(value: object, state: RecordState) -> object:
        values = state.values
        parts = [str(v).strip() for v in (values.get(f) for f in fields) if v is not None]
        text = sep.join(p for p in parts if p)
        return text or None
    return op


def _build_default(args: object, ctx: BuildContext) -> Op:
    return lambda value, state: args if value is None else value


def _build_const(args: object, ctx: BuildContext) -> Op:
    return lambda value, state: args


def _build_when(args: object, ctx: BuildContext) -> Op:
    """First matching case wins: `- if: {field: [values]} then: v`; `- else: v` ends it.
    With no case matching and no else, the value stays as it is."""
    if not isinstance(args, list) or not args:
        raise ValueError("'when' needs a list of cases: {if: {field: values}, then: value} or {else: value}")
    cases: list[tuple[list[tuple[str, set]], object]] = []
    for case in args:
        if isinstance(case, dict) and set(case) == {"else"}:
            cases.append(([], case["else"]))
            continue
        if not isinstance(case, dict) or set(case) != {"if", "then"} or not isinstance(case["if"], dict) or not case["if"]:
            raise ValueError(f"bad 'when' case {case!r}: write {{if: {{field: values}}, then: value}} or {{else: value}}")
        conditions = []
        for name, wanted in case["if"].items():
            ctx.check_field(name)
            conditions.append((name, {fold(w) for w in _as_list(wanted)}))
        cases.append((conditions, case["then"]))

    def op(value: object, state: RecordState) -> object:
        values = state.values
        for conditions, result in cases:
            if all(fold(values.get(name)) in wanted for name, wanted in conditions):
                return result
        return value
    return op


def _build_string(args: object, ctx: BuildContext) -> Op:
    _no_args("string")(args)
    return lambda value, state: value if isinstance(value, str) else str(value)


# -- enrich -----------------------------------------------------------------------------
def _build_ref(args: object, ctx: BuildContext) -> Op:
    """`ref: {entity: location, from: [_property_code, _unit_code]}`: the canonical id of
    another entity by its identity rule; also recorded in the record's references under
    `reference` (default: the entity type). `when_present: field` limits it to records
    where that field has a value (a unit's parent property)."""
    if not isinstance(args, dict) or set(args) - {"entity", "from", "reference", "when_present"}:
        raise ValueError("'ref' needs entity: <type>, from: [fields], optionally reference: <key>, when_present: <field>")
    identity = ctx.identities.get(args.get("entity"))  # type: ignore[arg-type]
    if identity is None:
        raise ValueError(f"'ref' entity {args.get('entity')!r} has no identity rule (known: {', '.join(ctx.identities)})")
    fields = _strings(args.get("from"), "'ref' from")
    if len(fields) > len(identity.field_parts):
        raise ValueError(f"'ref' from names {len(fields)} fields; the {identity.entity_type} identity has "
                         f"{len(identity.field_parts)}: {', '.join(identity.field_parts)}")
    for name in fields:
        ctx.check_field(name)
    key = str(args.get("reference", identity.entity_type))
    guard = args.get("when_present")
    if guard is not None:
        ctx.check_field(guard)

    def op(value: object, state: RecordState) -> object:
        values = state.values
        if guard is not None and values.get(guard) in (None, ""):
            return None
        ref = identity.make_id(state.source, [values.get(f) for f in fields])
        if ref is not None:
            state.references[key] = ref
        return ref
    return op


# -- normalize --------------------------------------------------------------------------
def _trim(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _null_if_empty(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _text(func: Callable[[str], str]) -> Callable[[object], object]:
    return lambda value: func(value) if isinstance(value, str) else value


def _build_phone(args: object, ctx: BuildContext) -> Op:
    region = "US" if args in (None, True) else args
    if region not in SUPPORTED_PHONE_REGIONS:
        raise ValueError(f"'phone' default region {region!r} is not supported (supported: {', '.join(SUPPORTED_PHONE_REGIONS)})")

    def op(value: object, state: RecordState) -> object:
        result = to_e164(str(value), region) if isinstance(value, (str, int)) else None
        if result is None:
            raise RuleFailure(f"is not a valid phone number ({region} default)")
        return result
    return op


def _build_utc(args: object, ctx: BuildContext) -> Op:
    """Times without an offset are read in the record's time zone (its timezone field, or
    the source's default), then everything becomes UTC, to the millisecond (Avro's unit)."""
    _no_args("utc")(args)

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
def _build_required(args: object, ctx: BuildContext) -> Op:
    if args is False:
        return lambda value, state: value
    _no_args("required")(args)

    def op(value: object, state: RecordState) -> object:
        if value is None or value == "":
            raise RuleFailure("is required")
        return value
    return op


def _build_required_if(args: object, ctx: BuildContext) -> Op:
    """`required_if: {location_type: [unit]}`: required when the other fields match."""
    if not isinstance(args, dict) or not args:
        raise ValueError("'required_if' needs {field: values}")
    conditions = []
    for name, wanted in args.items():
        ctx.check_field(name)
        conditions.append((name, {fold(w) for w in _as_list(wanted)}))

    def op(value: object, state: RecordState) -> object:
        if value in (None, "") and all(fold(state.values.get(n)) in w for n, w in conditions):
            raise RuleFailure("is required when " + ", ".join(f"{n} is {sorted(map(str, w))}" for n, w in conditions))
        return value
    return op


def _check(test: Callable[[object], bool], reason: str) -> Op:
    def op(value: object, state: RecordState) -> object:
        if not test(value):
            raise RuleFailure(reason)
        return value
    return op


def _build_email(args: object, ctx: BuildContext) -> Op:
    _no_args("email")(args)
    return _check(lambda v: isinstance(v, str) and is_email(v), "is not a valid e-mail address")


def _build_e164(args: object, ctx: BuildContext) -> Op:
    _no_args("phone")(args)
    return _check(lambda v: isinstance(v, str) and is_e164(v), "is not an E.164 phone number")


def _build_regex(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, str):
        raise ValueError("'regex' needs a pattern string")
    try:
        pattern = re.compile(args)
    except re.error as exc:
        raise ValueError(f"bad regex {args!r}: {exc}") from None
    return _check(lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None, f"does not match {args}")


def _build_allowed(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, list) or not args:
        raise ValueError("'allowed' needs a list of values")
    allowed = set(args)
    listed = ", ".join(map(str, args))
    return _check(lambda v: _hashable_in(v, allowed), f"is not one of {listed}")


def _hashable_in(value: object, allowed: set) -> bool:
    try:
        return value in allowed
    except TypeError:
        return False


def _build_range(args: object, ctx: BuildContext) -> Op:
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
    return _check(test, f"is not within {low if low is not None else '…'}..{high if high is not None else '…'}")


def _build_length(args: object, ctx: BuildContext) -> Op:
    if not isinstance(args, dict) or not args or set(args) - {"min", "max"}:
        raise ValueError("'length' needs min and/or max")
    low, high = args.get("min", 0), args.get("max")
    return _check(lambda v: isinstance(v, str) and low <= len(v) and (high is None or len(v) <= high),
                  f"length is not within {low}..{high if high is not None else '…'}")


def _build_not_before(args: object, ctx: BuildContext) -> Op:
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


STEPS = ("extract", "transform", "enrich", "normalize", "validate")

RULE_TYPES: dict[str, dict[str, RuleType]] = {
    "transform": {
        "map": RuleType(_build_map, False, "source value -> canonical value"),
        "date": RuleType(_build_date, False, "text -> date"),
        "timestamp": RuleType(_build_timestamp, False, "text/epoch -> timestamp"),
        "int": RuleType(_simple("int", parse_int), False, "-> whole number"),
        "float": RuleType(_simple("float", parse_float), False, "-> number"),
        "decimal": RuleType(_build_decimal, False, "-> fixed-point amount"),
        "bool": RuleType(_build_bool, False, "yes/no text -> boolean"),
        "string": RuleType(_build_string, False, "-> text"),
        "join": RuleType(_build_join, True, "combine fields"),
        "default": RuleType(_build_default, True, "value when missing"),
        "when": RuleType(_build_when, True, "value by conditions"),
    },
    "enrich": {
        "ref": RuleType(_build_ref, True, "canonical id of another entity"),
        "when": RuleType(_build_when, True, "value by conditions"),
        "default": RuleType(_build_default, True, "value when missing"),
        "const": RuleType(_build_const, True, "fixed value"),
    },
    "normalize": {
        "trim": RuleType(_simple("trim", _trim), False, "strip surrounding spaces"),
        "null_if_empty": RuleType(_simple("null_if_empty", _null_if_empty), False, "empty text -> null"),
        "lower": RuleType(_simple("lower", _text(str.lower)), False, "lower case"),
        "upper": RuleType(_simple("upper", _text(str.upper)), False, "upper case"),
        "title": RuleType(_simple("title", _text(str.title)), False, "title case"),
        "collapse_spaces": RuleType(_simple("collapse_spaces", _text(lambda s: " ".join(s.split()))), False,
                                    "inner runs of spaces -> one"),
        "phone": RuleType(_build_phone, False, "phone -> E.164"),
        "utc": RuleType(_build_utc, False, "timestamp -> UTC"),
    },
    "validate": {
        "required": RuleType(_build_required, True, "must have a value"),
        "required_if": RuleType(_build_required_if, True, "must have a value when"),
        "email": RuleType(_build_email, False, "e-mail address"),
        "phone": RuleType(_build_e164, False, "E.164 phone"),
        "regex": RuleType(_build_regex, False, "matches a pattern"),
        "allowed": RuleType(_build_allowed, False, "one of a list"),
        "range": RuleType(_build_range, False, "within bounds"),
        "length": RuleType(_build_length, False, "text length within bounds"),
        "not_before": RuleType(_build_not_before, False, "not earlier than another field"),
    },
}
