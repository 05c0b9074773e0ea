"""Reads the rules file (YAML) and compiles it into one Pipeline per (source, entity type).

Everything that can be wrong with the file is found here, at load, and reported as a
ConfigError naming the file, the place in the document and the problem."""

from __future__ import annotations

import uuid
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from syncflow.agents.rules.identity import SOURCE_PART, IdentityRule
from syncflow.agents.rules.ops import RULE_TYPES, STEPS
from syncflow.agents.rules.ops_base import BuildContext
from syncflow.agents.rules.paths import compile_path
from syncflow.agents.rules.pipeline import (
    ALL_TEXT, ENGINE_FIELDS, CompiledRule, DeleteSignal, Extraction, Pipeline, TimezoneField,
)
from syncflow.agents.rules.schemas import ENTITY_SCHEMA_FILES, CanonicalSchema
from syncflow.errors import ConfigError

TOP_KEYS = {"version", "identity", "defaults", "common", "sources"}
SOURCE_KEYS = {"timezone", "entities"}
ENTITY_KEYS = {"delete", "timezone_field", "priority", *STEPS}
EXTRACT_KEYS = {"path", "first", "const", "default"}


class _Problem(Exception):
    """A problem at a place in the document; becomes a ConfigError with the file name."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a key written twice in one mapping (YAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_rules_document(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rules file: {exc}") from exc
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the rules file must be a mapping with identity, defaults, common and sources")
    return document


def compile_rules(path: Path, schemas: dict[str, CanonicalSchema]) -> dict[tuple[str, str], Pipeline]:
    """Every (source, entity type) pipeline the file describes."""
    document = read_rules_document(path)
    try:
        return _compile(document, schemas)
    except _Problem as problem:
        raise ConfigError(f"{path}: {problem}") from None


def _compile(document: dict, schemas: dict[str, CanonicalSchema]) -> dict[tuple[str, str], Pipeline]:
    _keys(document, TOP_KEYS, "(top level)", required={"identity", "sources"})
    if document.get("version", 1) != 1:
        raise _Problem("version", f"unsupported version {document['version']!r} (this engine reads version 1)")
    identities = _identities(document["identity"], schemas)
    defaults = _mapping(document.get("defaults") or {}, "defaults")
    _keys(defaults, {"timezone", "priority"}, "defaults")
    default_tz = _timezone(defaults.get("timezone", "UTC"), "defaults.timezone")
    default_priority = _priority(defaults.get("priority", 5), "defaults.priority")

    common = _mapping(document.get("common") or {}, "common")
    for entity_type, section in common.items():
        _entity_type(entity_type, "common", schemas)
        _keys(_mapping(section, f"common.{entity_type}"), set(STEPS) - {"extract"}, f"common.{entity_type}")

    sources = _mapping(document["sources"], "sources")
    if not sources:
        raise _Problem("sources", "no source is described")
    pipelines: dict[tuple[str, str], Pipeline] = {}
    for source, source_section in sources.items():
        where = f"sources.{source}"
        source_section = _mapping(source_section, where)
        _keys(source_section, SOURCE_KEYS, where, required={"entities"})
        source_tz = _timezone(source_section.get("timezone"), f"{where}.timezone") if "timezone" in source_section else default_tz
        for entity_type, entity_section in _mapping(source_section["entities"], f"{where}.entities").items():
            entity_where = f"{where}.entities.{entity_type}"
            _entity_type(entity_type, f"{where}.entities", schemas)
            pipelines[(str(source), entity_type)] = _pipeline(
                str(source), entity_type, _mapping(entity_section, entity_where), entity_where,
                common.get(entity_type) or {}, schemas[entity_type], identities, source_tz, default_priority)
    return pipelines


def _pipeline(source: str, entity_type: str, section: dict, where: str, common: dict, schema: CanonicalSchema,
              identities: dict[str, IdentityRule], timezone: ZoneInfo, default_priority: int) -> Pipeline:
    _keys(section, ENTITY_KEYS, where, required={"extract"})
    targets = schema.target_names()

    def check_field(name: object) -> None:
        if not isinstance(name, str) or not (name.startswith("_") or name in targets):
            raise ValueError(f"{name!r} is not a field of the canonical {schema.name} "
                             f"(nor a working field starting with '_')")

    context = BuildContext(identities, check_field)
    prefix = f"{source}.{entity_type}"
    extractions = tuple(_extraction(f"{prefix}.extract.{field}", field, spec, f"{where}.extract.{field}", check_field)
                        for field, spec in _mapping(section["extract"], f"{where}.extract").items())
    steps = []
    written = {e.field for e in extractions}
    for step in STEPS[1:]:
        rules = []
        for scope, step_where, rules_section in (("common", f"common.{entity_type}.{step}", common.get(step)),
                                                  (source, f"{where}.{step}", section.get(step))):
            for field, spec in _mapping(rules_section or {}, step_where).items():
                rules.extend(_field_rules(f"{scope}.{entity_type}.{step}.{field}", step, field, spec,
                                          f"{step_where}.{field}", context))
        if step in ("transform", "enrich"):  # rules that can make a value from nothing
            written.update(r.field for r in rules if r.takes_none)
        steps.append(tuple(rules))

    missing = [f.name for f in schema.fields if f.required and f.name not in ENGINE_FIELDS
               and f.name not in written and not any(s.startswith(f.name + ".") for s in written)]
    if missing:
        raise _Problem(where, f"the canonical {schema.name} requires {', '.join(missing)} but no extract, "
                              f"transform or enrich rule writes it")
    identity = identities.get(entity_type)
    if identity is None:
        raise _Problem("identity.entities", f"no identity rule for {entity_type}")
    return Pipeline(source, entity_type, schema, identity, extractions, tuple(steps),
                    _delete(section.get("delete"), f"{prefix}.delete", f"{where}.delete"),
                    timezone, _timezone_field(section.get("timezone_field"), f"{prefix}.timezone_field", where),
                    _priority(section.get("priority", default_priority), f"{where}.priority"))


def _extraction(name: str, field: str, spec: object, where: str, check_field) -> Extraction:
    _field_name(field, where, check_field)
    if isinstance(spec, str):
        spec = {"path": spec}
    spec = _mapping(spec, where)
    _keys(spec, EXTRACT_KEYS, where)
    sources = [k for k in ("path", "first", "const") if k in spec]
    if len(sources) != 1:
        raise _Problem(where, "an extract rule needs exactly one of path, first or const")
    default = spec.get("default")
    try:
        if "const" in spec:
            constant = spec["const"]
            return Extraction(name, field, lambda record: constant)
        paths = spec["first"] if "first" in spec else [spec["path"]]
        if not isinstance(paths, list) or not paths:
            raise ValueError("'first' needs a list of paths")
        getters = [compile_path(p) for p in paths]
    except ValueError as exc:
        raise _Problem(where, str(exc)) from None
    if len(getters) == 1 and default is None:
        return Extraction(name, field, getters[0])

    def get(record: dict) -> object:
        for getter in getters:
            value = getter(record)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                return value
        return default

    return Extraction(name, field, get)


def _field_rules(name: str, step: str, field: object, spec: object, where: str,
                 context: BuildContext) -> list[CompiledRule]:
    if field == ALL_TEXT:
        if step != "normalize":
            raise _Problem(where, f"'{ALL_TEXT}' (every text value) is allowed only in normalize")
    else:
        _field_name(field, where, context.check_field)
    known = RULE_TYPES[step]
    rules = []
    for op_name, args in _ops(spec, where):
        rule_type = known.get(op_name)
        if rule_type is None:
            raise _Problem(where, f"unknown rule type {op_name!r} in step {step} (known: {', '.join(known)})")
        try:
            op = rule_type.build(args, context)
        except ValueError as exc:
            raise _Problem(f"{where}.{op_name}", str(exc)) from None
        rules.append(CompiledRule(f"{name}.{op_name}", str(field), op, rule_type.takes_none))
    return rules


def _ops(spec: object, where: str) -> list[tuple[str, object]]:
    """`trim`, `{map: {...}, default: x}` or a list of either, in the order written."""
    items = spec if isinstance(spec, list) else [spec]
    ops: list[tuple[str, object]] = []
    for item in items:
        if isinstance(item, str):
            ops.append((item, None))
        elif isinstance(item, dict) and item:
            ops.extend((str(k), v) for k, v in item.items())
        else:
            raise _Problem(where, f"a rule is a rule type name or a mapping of rule types to arguments, not {item!r}")
    if not ops:
        raise _Problem(where, "no rule given")
    return ops


def _field_name(field: object, where: str, check_field) -> None:
    if field in ENGINE_FIELDS:
        raise _Problem(where, f"{field!r} is set by the engine; rules may not write it")
    try:
        check_field(field)
    except ValueError as exc:
        raise _Problem(where, str(exc)) from None


def _identities(section: object, schemas: dict[str, CanonicalSchema]) -> dict[str, IdentityRule]:
    section = _mapping(section, "identity")
    _keys(section, {"namespace", "entities"}, "identity", required={"namespace", "entities"})
    try:
        namespace = uuid.UUID(str(section["namespace"]))
    except ValueError:
        raise _Problem("identity.namespace", f"{section['namespace']!r} is not a UUID") from None
    rules = {}
    for entity_type, spec in _mapping(section["entities"], "identity.entities").items():
        where = f"identity.entities.{entity_type}"
        _entity_type(entity_type, "identity.entities", schemas)
        spec = _mapping(spec, where)
        _keys(spec, {"prefix", "parts", "upper"}, where, required={"prefix", "parts"})
        parts = spec["parts"]
        fields = schemas[entity_type].target_names()
        if not isinstance(parts, list) or not parts or not all(p == SOURCE_PART or p in fields for p in parts):
            raise _Problem(f"{where}.parts", f"parts must be a list of {schemas[entity_type].name} fields "
                                             f"(or {SOURCE_PART}), not {parts!r}")
        if all(p == SOURCE_PART for p in parts):
            raise _Problem(f"{where}.parts", "parts need at least one field besides source_system")
        rules[entity_type] = IdentityRule(entity_type, str(spec["prefix"]), tuple(parts), bool(spec.get("upper", False)),
                                          namespace)
    return rules


def _delete(spec: object, name: str, where: str) -> DeleteSignal | None:
    """`delete: {field: IsDeleted, equals: [true]}` or `delete: {field: deleted_at, present: true}`."""
    if spec is None:
        return None
    spec = _mapping(spec, where)
    _keys(spec, {"field", "equals", "present"}, where, required={"field"})
    if ("equals" in spec) == ("present" in spec):
        raise _Problem(where, "a delete signal needs either equals: [values] or present: true")
    try:
        getter = compile_path(spec["field"])
    except ValueError as exc:
        raise _Problem(f"{where}.field", str(exc)) from None
    values = None
    if "equals" in spec:
        equals = spec["equals"]
        values = frozenset(equals if isinstance(equals, list) else [equals])
    return DeleteSignal(name, getter, values)


def _timezone_field(path: object, name: str, where: str) -> TimezoneField | None:
    if path is None:
        return None
    try:
        return TimezoneField(name, str(path), compile_path(path))  # type: ignore[arg-type]
    except ValueError as exc:
        raise _Problem(f"{where}.timezone_field", str(exc)) from None


def _timezone(name: object, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise _Problem(where, f"{name!r} is not a known IANA time zone") from None


def _priority(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
        raise _Problem(where, f"priority must be a whole number from 1 to 10, not {value!r}")
    return value


def _entity_type(entity_type: object, where: str, schemas: dict[str, CanonicalSchema]) -> None:
    if entity_type not in schemas:
        raise _Problem(f"{where}.{entity_type}", f"unknown entity type (known: {', '.join(ENTITY_SCHEMA_FILES)})")


def _mapping(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise _Problem(where, f"must be a mapping, not {type(value).__name__}")
    return value


def _keys(section: dict, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    unknown = [str(k) for k in section if k not in allowed]
    if unknown:
        raise _Problem(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    missing = [k for k in sorted(required) if k not in section]
    if missing:
        raise _Problem(where, f"missing section(s) {', '.join(missing)}")
