"""The rule types each step offers, by name, as the rules file writes them. A rule type
turns its arguments into a plain callable once, at load: `op(value, state) -> new value`,
raising RuleFailure when the value breaks the rule. Bad arguments raise ValueError, which
the loader reports as a ConfigError with the rule's place in the file."""

from __future__ import annotations

from syncflow.agents.rules.ops_base import RuleType, simple
from syncflow.agents.rules.ops_check import (
    build_allowed, build_e164, build_email, build_length, build_not_before, build_phone, build_range,
    build_regex, build_required, build_required_if, build_utc, null_if_empty, text_op, trim,
)
from syncflow.agents.rules.ops_transform import (
    build_bool, build_const, build_date, build_decimal, build_default, build_join, build_map, build_ref,
    build_string, build_timestamp, build_when,
)
from syncflow.agents.rules.values import parse_float, parse_int

STEPS = ("extract", "transform", "enrich", "normalize", "validate")

RULE_TYPES: dict[str, dict[str, RuleType]] = {
    "transform": {
        "map": RuleType(build_map, False, "source value -> canonical value"),
        "date": RuleType(build_date, False, "text -> date"),
        "timestamp": RuleType(build_timestamp, False, "text/epoch -> timestamp"),
        "int": RuleType(simple("int", parse_int), False, "-> whole number"),
        "float": RuleType(simple("float", parse_float), False, "-> number"),
        "decimal": RuleType(build_decimal, False, "-> fixed-point amount"),
        "bool": RuleType(build_bool, False, "yes/no text -> boolean"),
        "string": RuleType(build_string, False, "-> text"),
        "join": RuleType(build_join, True, "combine fields"),
        "default": RuleType(build_default, True, "value when missing"),
        "when": RuleType(build_when, True, "value by conditions"),
    },
    "enrich": {
        "ref": RuleType(build_ref, True, "canonical id of another entity"),
        "when": RuleType(build_when, True, "value by conditions"),
        "default": RuleType(build_default, True, "value when missing"),
        "const": RuleType(build_const, True, "fixed value"),
    },
    "normalize": {
        "trim": RuleType(simple("trim", trim), False, "strip surrounding spaces"),
        "null_if_empty": RuleType(simple("null_if_empty", null_if_empty), False, "empty text -> null"),
        "lower": RuleType(simple("lower", text_op(str.lower)), False, "lower case"),
        "upper": RuleType(simple("upper", text_op(str.upper)), False, "upper case"),
        "title": RuleType(simple("title", text_op(str.title)), False, "title case"),
        "collapse_spaces": RuleType(simple("collapse_spaces", text_op(lambda s: " ".join(s.split()))), False,
                                    "inner runs of spaces -> one"),
        "phone": RuleType(build_phone, False, "phone -> E.164"),
        "utc": RuleType(build_utc, False, "timestamp -> UTC"),
    },
    "validate": {
        "required": RuleType(build_required, True, "must have a value"),
        "required_if": RuleType(build_required_if, True, "must have a value when"),
        "email": RuleType(build_email, False, "e-mail address"),
        "phone": RuleType(build_e164, False, "E.164 phone"),
        "regex": RuleType(build_regex, False, "matches a pattern"),
        "allowed": RuleType(build_allowed, False, "one of a list"),
        "range": RuleType(build_range, False, "within bounds"),
        "length": RuleType(build_length, False, "text length within bounds"),
        "not_before": RuleType(build_not_before, False, "not earlier than another field"),
    },
}
