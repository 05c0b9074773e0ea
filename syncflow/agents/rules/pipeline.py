"""One compiled pipeline per (source, entity type): the five steps as lists of plain
callables, run over one record. Every failure is collected, so one ValidationError names
every rule the record breaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncflow.agents.rules.identity import IdentityRule
from syncflow.agents.rules.ops_base import Op, RecordState
from syncflow.agents.rules.record import CanonicalRecord
from syncflow.agents.rules.schemas import NO_DEFAULT, CanonicalSchema
from syncflow.agents.rules.values import RuleFailure
from syncflow.errors import FieldError, ValidationError

UTC = timezone.utc
ENGINE_FIELDS = ("entity_id", "source_system", "deleted")  # set by the engine, never by rules
ALL_TEXT = "*"  # a normalize rule on every text value of the working record


@dataclass(frozen=True)
class CompiledRule:
    name: str  # its place in the rules file, e.g. "yardi.service_request.validate.status.allowed"
    field: str
    op: Op
    takes_none: bool


@dataclass(frozen=True)
class Extraction:
    name: str
    field: str
    get: Callable[[dict], object]


@dataclass(frozen=True)
class DeleteSignal:
    """The record is a delete when the field has one of `values` (or, with values None,
    any value at all)."""

    name: str
    get: Callable[[dict], object]
    values: frozenset | None

    def __call__(self, record: dict) -> bool:
        value = self.get(record)
        if self.values is None:
            return value not in (None, "")
        try:
            return value in self.values
        except TypeError:
            return False


@dataclass(frozen=True)
class TimezoneField:
    name: str
    path: str
    get: Callable[[dict], object]


@dataclass(frozen=True)
class Pipeline:
    source: str
    entity_type: str
    schema: CanonicalSchema
    identity: IdentityRule
    extractions: tuple[Extraction, ...]
    steps: tuple[tuple[CompiledRule, ...], ...]  # transform, enrich, normalize, validate
    delete: DeleteSignal | None
    timezone: ZoneInfo
    timezone_field: TimezoneField | None
    priority: int

    def run(self, record: dict) -> CanonicalRecord:
        if not isinstance(record, dict):
            raise ValidationError([FieldError(f"{self.source}.{self.entity_type}", "", type(record).__name__,
                                              "is not a record")])
        errors: list[FieldError] = []
        failed: set[str] = set()
        state = RecordState(self.source, record, self._timezone(record, errors))
        deleted = self.delete(record) if self.delete is not None else False
        values = state.values
        for extraction in self.extractions:
            values[extraction.field] = extraction.get(record)
        values["source_system"] = self.source

        transform, enrich, normalize, validate = self.steps
        _run_rules(transform, state, errors, failed)
        values["entity_id"] = entity_id = self.identity.make_id(
            self.source, [values.get(p) for p in self.identity.field_parts])
        if entity_id is None:
            first = self.identity.field_parts[0]
            errors.append(FieldError(f"identity.{self.entity_type}", first, values.get(first),
                                     "is required to make the canonical id"))
            failed.add(first)
        _run_rules(enrich, state, errors, failed)
        _run_rules(normalize, state, errors, failed)
        _run_rules(validate, state, errors, failed)

        if deleted and errors:
            errors, failed = self._lenient(errors, failed)
        entity = self._entity(values, failed, lenient=deleted)
        entity["deleted"] = deleted
        self._check_schema(entity, errors, failed)
        if errors:
            raise ValidationError(errors)
        priority = entity.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            priority = self.priority
        return CanonicalRecord(self.entity_type, entity_id or "", entity, priority, dict(state.references), deleted)

    def _timezone(self, record: dict, errors: list[FieldError]) -> ZoneInfo:
        """The record's own time zone when the rules name a field for it, else the source's."""
        if self.timezone_field is None:
            return self.timezone
        name = self.timezone_field.get(record)
        if name in (None, ""):
            return self.timezone
        try:
            return ZoneInfo(str(name).strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            errors.append(FieldError(self.timezone_field.name, self.timezone_field.path, name,
                                     "is not a known IANA time zone"))
            return self.timezone

    def _lenient(self, errors: list[FieldError], failed: set[str]) -> tuple[list[FieldError], set[str]]:
        """A delete only needs its identity: failures elsewhere are dropped."""
        critical = {"source_id", *self.identity.field_parts}
        kept = [e for e in errors if e.field in critical or not e.field]
        return kept, {e.field for e in kept}

    def _entity(self, values: dict, failed: set[str], lenient: bool) -> dict:
        entity: dict = {}
        for f in self.schema.fields:
            if f.subfields:
                sub = {s.name: values.get(f"{f.name}.{s.name}") for s in f.subfields}
                value = sub if any(v is not None for v in sub.values()) else values.get(f.name)
            else:
                value = values.get(f.name)
            if value is None:
                if f.default is not NO_DEFAULT and f.default is not None:
                    value = f.default
                elif lenient and f.required and f.name not in failed:
                    value = f.filler()
            elif f.kind == "timestamp" and isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset():
                value = value.astimezone(UTC)
            entity[f.name] = value
        return entity

    def _check_schema(self, entity: dict, errors: list[FieldError], failed: set[str]) -> None:
        """Nothing leaves the engine that its canonical schema would refuse."""
        rule = f"schema.{self.entity_type}"
        for f in self.schema.fields:
            value = entity[f.name]
            if f.kind == "timestamp" and isinstance(value, datetime) and value.tzinfo is None and f.name not in failed:
                errors.append(FieldError(rule, f.name, value, "has no time zone (add a 'utc' normalize rule)"))
                failed.add(f.name)
        if self.schema.matches(entity):
            return
        for f in self.schema.failing_fields(entity):
            if f.name in failed:
                continue
            value = entity[f.name]
            reason = "is required" if value is None else f"does not fit the canonical {self.schema.name}.{f.name} ({f.kind})"
            errors.append(FieldError(rule, f.name, value, reason))


def _run_rules(rules: tuple[CompiledRule, ...], state: RecordState, errors: list[FieldError], failed: set[str]) -> None:
    values = state.values
    for rule in rules:
        field = rule.field
        if field == ALL_TEXT:
            for key in [k for k, v in values.items() if type(v) is str and k not in failed]:
                _apply(rule, key, values[key], state, errors, failed)
            continue
        if field in failed:
            continue
        value = values.get(field)
        if value is None and not rule.takes_none:
            continue
        _apply(rule, field, value, state, errors, failed)


def _apply(rule: CompiledRule, field: str, value: object, state: RecordState, errors: list[FieldError],
           failed: set[str]) -> None:
    try:
        state.values[field] = rule.op(value, state)
        return
    except RuleFailure as failure:
        reason = failure.reason
    except Exception as exc:  # a value of a shape no rule expected: still the record's fault
        reason = f"cannot be handled ({type(exc).__name__}: {exc})"
    errors.append(FieldError(rule.name, field, value, reason))
    failed.add(field)
    state.values[field] = None
