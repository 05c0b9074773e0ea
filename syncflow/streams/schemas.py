"""The Avro schema catalogue: every `*.avsc` under the schemas directory, by full name and
by CRC-64-AVRO fingerprint.

Files may reference named types defined in other files; each schema is made self-contained
(references inlined at first use) so its fingerprint and its registry registration describe
the whole type. Files under a `history/` folder are older versions of a schema: they are
known by fingerprint (old data still decodes) but never used to write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from syncflow.errors import ConfigError, UnknownSchemaError

HISTORY_DIR = "history"
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_TYPES = frozenset({"record", "error", "enum", "fixed"})
AMBIGUOUS = "<defined differently in several files>"

Json = Any  # a schema in its JSON form: str | list | dict


@dataclass(frozen=True, eq=False)
class SchemaVersion:
    """One version of a named schema, parsed and fingerprinted once."""

    name: str
    schema: dict[str, Json] = field(repr=False)  # self-contained JSON form
    parsed: Any = field(repr=False)  # fastavro's parsed form, for schemaless_writer/reader
    canonical_form: str = field(repr=False)
    fingerprint: bytes  # 8 bytes: CRC-64-AVRO, little-endian as in single-object encoding
    current: bool = True
    source: Path | None = None
    field_names: frozenset[str] = frozenset()

    def to_json(self) -> str:
        return json.dumps(self.schema, separators=(",", ":"))


def make_version(schema: dict[str, Json], *, current: bool = True, source: Path | None = None) -> SchemaVersion:
    """Parse and fingerprint a self-contained schema. Raises ConfigError if it is not valid Avro."""
    where = f" in {source}" if source else ""
    try:
        parsed = parse_schema(schema)
        canonical = to_parsing_canonical_form(schema)
    except Exception as exc:
        raise ConfigError(f"invalid Avro schema{where}: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") not in NAMED_TYPES:
        raise ConfigError(f"top-level schema{where} must be a named record, enum or fixed")
    fields = frozenset(f["name"] for f in parsed.get("fields", []))
    return SchemaVersion(
        name=parsed["name"],
        schema=schema,
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        current=current,
        source=source,
        field_names=fields,
    )


class SchemaCatalogue:
    """Current schemas by full name, every known version by fingerprint."""

    def __init__(self, versions: Iterable[SchemaVersion]):
        self._current: dict[str, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._all: dict[str, list[SchemaVersion]] = {}
        for version in versions:
            self._add(version)

    def _add(self, version: SchemaVersion) -> None:
        known = self._by_fingerprint.get(version.fingerprint)
        if known is not None:
            if known.canonical_form != version.canonical_form:
                raise ConfigError(f"fingerprint collision between {known.source} and {version.source}")
            if known.current and version.current:
                raise ConfigError(f"{version.name} is defined twice: {known.source} and {version.source}")
            if not version.current:
                return  # an old copy of a schema already known
            self._all[known.name].remove(known)  # now current: drop its history entry
        if version.current:
            if version.name in self._current:
                raise ConfigError(
                    f"{version.name} is defined twice: {self._current[version.name].source} and {version.source}"
                )
            self._current[version.name] = version
        self._by_fingerprint[version.fingerprint] = version
        self._all.setdefault(version.name, []).append(version)

    @classmethod
    def load(cls, directory: Path) -> "SchemaCatalogue":
        """Every `*.avsc` under `directory`, recursively; `history/` folders hold old versions."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"schemas directory {directory} does not exist")
        current: list[tuple[Path, dict[str, Json]]] = []
        history: list[tuple[Path, dict[str, Json]]] = []
        for path in sorted(directory.rglob("*.avsc")):
            in_history = HISTORY_DIR in path.relative_to(directory).parts[:-1]
            (history if in_history else current).append((path, read_schema_file(path)))
        return cls.from_json(current, history)

    @classmethod
    def from_json(
        cls,
        current: Iterable[tuple[Path | None, dict[str, Json]]],
        history: Iterable[tuple[Path | None, dict[str, Json]]] = (),
    ) -> "SchemaCatalogue":
        """Build from schemas in JSON form; references resolve against the current ones."""
        current, history = list(current), list(history)
        definitions: dict[str, dict[str, Json]] = {}
        ambiguous: set[str] = set()
        for path, schema in current:
            for name, definition in named_definitions(schema):
                if name in definitions and definitions[name] != definition:
                    ambiguous.add(name)  # an error only if another file references it
                definitions[name] = definition
        for name in ambiguous:
            definitions[name] = {"type": AMBIGUOUS, "name": name}
        versions = [make_version(self_contained(s, definitions, path), source=path) for path, s in current]
        for path, schema in history:
            own = dict(definitions)
            own.update(named_definitions(schema))
            versions.append(make_version(self_contained(schema, own, path), current=False, source=path))
        return cls(versions)

    def get(self, name: str) -> SchemaVersion:
        """The current version of `name`, to write with or to read into."""
        try:
            return self._current[name]
        except KeyError:
            raise UnknownSchemaError(f"no schema named {name!r} in the catalogue") from None

    def find(self, name: str) -> SchemaVersion | None:
        return self._current.get(name)

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchemaError(f"no known schema has fingerprint {fp.hex()}") from None

    def find_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def names(self) -> list[str]:
        return sorted(self._current)

    def versions(self, name: str) -> list[SchemaVersion]:
        """Every known version of `name`, current and historical."""
        return list(self._all.get(name, []))

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def __len__(self) -> int:
        return len(self._current)


def read_schema_file(path: Path) -> dict[str, Json]:
    """One `.avsc` file as JSON: the one place schema files are read (the catalogue, the
    sources' native schemas, the canonical schemas of the rules). ConfigError when it
    cannot be read or does not hold one named type."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read schema file {path}: {exc}") from exc
    if not isinstance(schema, dict):
        raise ConfigError(f"schema file {path} must hold one named type (a JSON object)")
    return schema


def _full_name(node: dict[str, Json], namespace: str) -> tuple[str, str]:
    """(full name, namespace for its children) per the Avro naming rules."""
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"named type without a name: {json.dumps(node)[:200]}")
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    ns = node.get("namespace", namespace) or ""
    return (f"{ns}.{name}" if ns else name), ns


def named_definitions(schema: Json, namespace: str = "") -> Iterator[tuple[str, dict[str, Json]]]:
    """Every named type defined in `schema`, as (full name, definition renamed to its full name)."""
    if isinstance(schema, list):
        for branch in schema:
            yield from named_definitions(branch, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED_TYPES:
            full, ns = _full_name(schema, namespace)
            definition = {k: v for k, v in schema.items() if k != "namespace"}
            definition["name"] = full
            yield full, definition
            for f in schema.get("fields", []) if kind in ("record", "error") else []:
                yield from named_definitions(f.get("type"), ns)
        elif kind == "array":
            yield from named_definitions(schema.get("items"), namespace)
        elif kind == "map":
            yield from named_definitions(schema.get("values"), namespace)
        elif isinstance(kind, (dict, list)):
            yield from named_definitions(kind, namespace)


def self_contained(schema: dict[str, Json], definitions: dict[str, dict[str, Json]], source: Path | None = None) -> dict[str, Json]:
    """A copy of `schema` in which each reference to a type defined elsewhere is replaced by
    that type's definition at its first use, as the Parsing Canonical Form requires."""
    return _inline(schema, "", definitions, set(), source)


def _inline(node: Json, namespace: str, definitions: dict[str, dict[str, Json]], seen: set[str], source: Path | None) -> Json:
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        candidates = [f"{namespace}.{node}", node] if namespace and "." not in node else [node]
        for full in candidates:
            if full in seen:
                return full
        for full in candidates:
            if full in definitions:
                if definitions[full]["type"] == AMBIGUOUS:
                    raise ConfigError(f"{source or 'schema'}: {full} is defined differently in several files")
                return _inline(definitions[full], namespace, definitions, seen, source)
        raise ConfigError(f"{source or 'schema'}: unknown named type {node!r} (not defined in any schema file)")
    if isinstance(node, list):
        return [_inline(branch, namespace, definitions, seen, source) for branch in node]
    if not isinstance(node, dict):
        raise ConfigError(f"{source or 'schema'}: not a schema: {node!r}")
    kind = node.get("type")
    if kind in NAMED_TYPES:
        full, ns = _full_name(node, namespace)
        if full in seen:
            raise ConfigError(f"{source or 'schema'}: named type {full} is defined twice")
        seen.add(full)
        out = {k: v for k, v in node.items() if k != "namespace"}
        out["name"] = full
        if kind in ("record", "error"):
            fields = node.get("fields")
            if not isinstance(fields, list) or not all(isinstance(f, dict) and "name" in f and "type" in f for f in fields):
                raise ConfigError(f"{source or 'schema'}: record {full} needs a list of fields, each with a name and a type")
            out["fields"] = [{**f, "type": _inline(f["type"], ns, definitions, seen, source)} for f in fields]
        return out
    if kind == "array":
        return {**node, "items": _inline(node.get("items"), namespace, definitions, seen, source)}
    if kind == "map":
        return {**node, "values": _inline(node.get("values"), namespace, definitions, seen, source)}
    if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES):
        return _inline(kind, namespace, definitions, seen, source)  # {"type": <schema or name>}
    return dict(node)
