"""Rule types of the transform and enrich steps: vocabularies, type conversions, combined
fields, conditions and references to other entities."""

from __future__ import annotations

from decimal import Decimal

from syncflow.agents.rules.ops_base import BuildContext, Op, RecordState, as_list, no_args, strings
from syncflow.agents.rules.values import (
    EPOCH_MS, EPOCH_S, ISO, RuleFailure, fold, parse_date, parse_decimal, parse_timestamp,
)


def build_map(args: object, ctx: BuildContext) -> Op:
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
    formats = strings(args, f"'{what}' format")
    for fmt in formats:
        if fmt not in (ISO, EPOCH_MS, EPOCH_S) and "%" not in fmt:
            raise ValueError(f"'{what}' format {fmt!r} is not 'iso', 'epoch_ms', 'epoch_s' or a strptime format")
    return formats


def build_date(args: object, ctx: BuildContext) -> Op:
    formats = _formats(args, "date")
    return lambda value, state: parse_date(value, formats)


def build_timestamp(args: object, ctx: BuildContext) -> Op:
    formats = _formats(args, "timestamp")
    return lambda value, state: parse_timestamp(value, formats)


def build_decimal(args: object, ctx: BuildContext) -> Op:
    """`decimal: 2` or `decimal: {places: 2, multiply: 0.01}` (e.g. cents to dollars)."""
    if isinstance(args, int) and not isinstance(args, bool):
        args = {"places": args}
    if not isinstance(args, dict) or not isinstance(args.get("places"), int) or set(args) - {"places", "multiply"}:
        raise ValueError("'decimal' needs places: <int> and optionally multiply: <number>")
    places = args["places"]
    multiply = Decimal(str(args["multiply"])) if "multiply" in args else None
    return lambda value, state: parse_decimal(value, places, multiply)


def build_bool(args: object, ctx: BuildContext) -> Op:
    """`bool: {true: [Y, Yes, 1], false: [N, No, 0]}`; real booleans pass through."""
    if not isinstance(args, dict) or set(args) != {True, False}:
        raise ValueError("'bool' needs true: [values] and false: [values]")
    table = {fold(v): True for v in as_list(args[True])}
    table.update({fold(v): False for v in as_list(args[False])})

    def op(value: object, state: RecordState) -> object:
        if isinstance(value, bool):
            return value
        try:
            return table[fold(value)]
        except (KeyError, TypeError):
            raise RuleFailure("is not a known yes/no value") from None
    return op


def build_join(args: object, ctx: BuildContext) -> Op:
    """Combine working fields: `join: [_first, _last]` or `{fields: [...], sep: ', '}`."""
    if isinstance(args, list):
        args = {"fields": args}
    if not isinstance(args, dict) or set(args) - {"fields", "sep"}:
        raise ValueError("'join' needs fields: [names] and optionally sep: <text>")
    fields = strings(args.get("fields"), "'join' fields")
    for name in fields:
        ctx.check_field(name)
    sep = str(args.get("sep", " "))

    def op(value: object, state: RecordState) -> object:
        values = state.values
        parts = [str(v).strip() for v in (values.get(f) for f in fields) if v is not None]
        text = sep.join(p for p in parts if p)
        return text or None
    return op


def build_default(args: object, ctx: BuildContext) -> Op:
    return lambda value, state: args if value is None else value


def build_const(args: object, ctx: BuildContext) -> Op:
    return lambda value, state: args


def build_when(args: object, ctx: BuildContext) -> Op:
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
            conditions.append((name, {fold(w) for w in as_list(wanted)}))
        cases.append((conditions, case["then"]))

    def op(value: object, state: RecordState) -> object:
        values = state.values
        for conditions, result in cases:
            if all(fold(values.get(name)) in wanted for name, wanted in conditions):
                return result
        return value
    return op


def build_string(args: object, ctx: BuildContext) -> Op:
    no_args("string")(args)
    return lambda value, state: value if isinstance(value, str) else str(value)


# -- enrich -----------------------------------------------------------------------------
def build_ref(args: object, ctx: BuildContext) -> Op:
    """`ref: {entity: location, from: [_property_code, _unit_code]}`: the canonical id of
    another entity by its identity rule; also recorded in the record's references under
    `reference` (default: the entity type). `when_present: field` limits it to records
    where that field has a value (a unit's parent property)."""
    if not isinstance(args, dict) or set(args) - {"entity", "from", "reference", "when_present"}:
        raise ValueError("'ref' needs entity: <type>, from: [fields], optionally reference: <key>, when_present: <field>")
    identity = ctx.identities.get(args.get("entity"))  # type: ignore[arg-type]
    if identity is None:
        raise ValueError(f"'ref' entity {args.get('entity')!r} has no identity rule (known: {', '.join(ctx.identities)})")
    fields = strings(args.get("from"), "'ref' from")
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


