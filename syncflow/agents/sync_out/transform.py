"""Canonical snapshot → target payload, driven by the per-target rules in target_rules.yaml.

A rule is data, not code: adding a field or a target is an edit of the YAML (plus a client
class for a new API). The conversions a rule may name are the functions in CONVERSIONS."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from syncflow.model import ChangeEvent
from syncflow.errors import ConfigError, TransformError
from syncflow.sinks.targets.base import Delivery

_CALL = re.compile(r"^(\w+)\(([\w.]+)\)$")
_EPOCH_DAY = date(1970, 1, 1)


def _iso(value: Any) -> Any:
    """timestamp-millis → ISO-8601 UTC; strings are taken as already formatted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _date(value: Any) -> Any:
    """Avro date (days since 1970-01-01) → YYYY-MM-DD; strings pass through."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return (_EPOCH_DAY + timedelta(days=value)).isoformat()


def _urgency(value: Any) -> Any:
    """syncflow priority 1..10 → Lessen360's urgency words."""
    if not isinstance(value, int):
        return value
    return "emergency" if value <= 2 else "high" if value <= 4 else "normal" if value <= 7 else "low"


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "iso": _iso,
    "date": _date,
    "upper": lambda v: v.upper() if isinstance(v, str) else v,
    "lower": lambda v: v.lower() if isinstance(v, str) else v,
    "str": lambda v: None if v is None else str(v),
    "urgency": _urgency,
}


def lookup(snapshot: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, None where any step is missing."""
    value: Any = snapshot
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def map_fields(fields: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """Apply one resource's field rules to a snapshot."""
    return compile_fields(fields)(snapshot)


FieldMapper = Callable[[dict[str, Any]], Any]


def _getter(path: str) -> FieldMapper:
    """The value at a dotted path as a function of the snapshot (one dict lookup for a plain name)."""
    if "." not in path:
        return lambda snapshot: snapshot.get(path)
    return lambda snapshot: lookup(snapshot, path)


def _converted(conversion: Callable[[Any], Any], get: FieldMapper) -> FieldMapper:
    return lambda snapshot: conversion(get(snapshot))


def compile_fields(fields: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """One resource's field rules as a function of the snapshot, parsed once: a rule is read
    when the target's rules are loaded, not again for every record."""
    mappers: list[tuple[str, FieldMapper]] = []
    for name, source in fields.items():
        if isinstance(source, dict):
            mappers.append((name, compile_fields(source)))
        elif m := _CALL.match(source):
            mappers.append((name, _converted(CONVERSIONS[m.group(1)], _getter(m.group(2)))))
        else:
            mappers.append((name, _getter(source)))
    return lambda snapshot: {name: get(snapshot) for name, get in mappers}


@dataclass(frozen=True)
class ResourceRule:
    resource: str
    fields: dict[str, Any]


def _check_fields(target: str, fields: dict[str, Any]) -> None:
    for name, source in fields.items():
        if isinstance(source, dict):
            _check_fields(target, source)
        elif not isinstance(source, str):
            raise ConfigError(f"{target}: field {name!r} must map to a path, a func(path) or an object")
        elif (m := _CALL.match(source)) and m.group(1) not in CONVERSIONS:
            raise ConfigError(f"{target}: field {name!r} uses unknown conversion {m.group(1)!r}")


class Transformer:
    """One target's rules: which entity types it takes and how each becomes a Delivery."""

    def __init__(self, target: str, rules: dict[str, ResourceRule]):
        self.target = target
        self.rules = rules
        self._mappers = {entity_type: compile_fields(rule.fields) for entity_type, rule in rules.items()}

    @classmethod
    def from_file(cls, path: Path, target: str) -> "Transformer":
        """Load and check the target's section of the rules file (refused at start-up)."""
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read target rules {path}: {exc}") from exc
        section = (doc or {}).get(target)
        if not isinstance(section, dict):
            raise ConfigError(f"target rules {path} have no section for {target!r}")
        rules: dict[str, ResourceRule] = {}
        for entity_type, rule in section.items():
            if not isinstance(rule, dict) or "resource" not in rule or not isinstance(rule.get("fields"), dict):
                raise ConfigError(f"{target}.{entity_type}: needs 'resource' and 'fields'")
            _check_fields(target, rule["fields"])
            rules[entity_type] = ResourceRule(rule["resource"], rule["fields"])
        return cls(target, rules)

    def takes(self, entity_type: str) -> bool:
        return entity_type in self.rules

    def to_delivery(self, event: ChangeEvent) -> Delivery:
        """The call to make for this change event."""
        rule = self.rules.get(event.entity_type)
        if rule is None:
            raise TransformError(f"{self.target} has no rule for entity type {event.entity_type!r}")
        if event.change_type == "delete":
            return Delivery(event.entity_type, event.entity_id, event.version, "delete", rule.resource, None,
                            event.trace_id, event.resend)
        try:
            payload = self._mappers[event.entity_type](event.snapshot)
        except Exception as exc:  # a conversion meeting a value it cannot take
            raise TransformError(f"{self.target}.{event.entity_type}: {type(exc).__name__}: {exc}") from exc
        return Delivery(event.entity_type, event.entity_id, event.version, "upsert", rule.resource, payload,
                        event.trace_id, event.resend)
