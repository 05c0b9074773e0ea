"""Per-source mapping tables (native field -> canonical field -> rules) generated from the
rules file, so docs/rules.md cannot drift from what runs.

    python -m syncflow.agents.rules.doc [rules.yaml] [docs/rules.md]

rewrites the part of the markdown file between the BEGIN and END markers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from syncflow.agents.rules.loader import read_rules_document
from syncflow.agents.rules.ops import STEPS

BEGIN = "<!-- BEGIN generated mapping tables: python -m syncflow.agents.rules.doc -->"
END = "<!-- END generated mapping tables -->"
DEFAULT_RULES = Path(__file__).with_name("sync_in.yaml")
DEFAULT_DOC = Path(__file__).resolve().parents[3] / "docs" / "rules.md"


def mapping_tables(rules_file: Path = DEFAULT_RULES) -> str:
    document = read_rules_document(rules_file)
    common = document.get("common") or {}
    out: list[str] = []
    for source, source_section in document["sources"].items():
        out.append(f"### {source}\n")
        out.append(f"Default time zone: `{source_section.get('timezone', 'UTC')}`.\n")
        for entity_type, section in source_section["entities"].items():
            out.extend(_entity_table(source, entity_type, section, common.get(entity_type) or {}))
    return "\n".join(out)


def _entity_table(source: str, entity_type: str, section: dict, common: dict) -> list[str]:
    lines = [f"#### {source} {entity_type}\n"]
    notes = []
    if "delete" in section:
        delete = section["delete"]
        signal = (f"`{delete['field']}` set" if delete.get("present")
                  else f"`{delete['field']}` in `{json.dumps(delete['equals'])}`")
        notes.append(f"delete signal: {signal}")
    if "timezone_field" in section:
        notes.append(f"times without offset read in the zone named by `{section['timezone_field']}`")
    if notes:
        text = "; ".join(notes)
        lines.append(text[0].upper() + text[1:] + ".\n")
    lines.append("| native field | canonical field | rules |")
    lines.append("|---|---|---|")
    scopes = (("common", common), (source, section))
    extracted = section.get("extract") or {}
    for field, spec in extracted.items():
        lines.append(f"| {_native(spec)} | `{field}` | {_rules_for(field, entity_type, scopes)} |")
    derived = {f for _, sc in scopes for step in STEPS[1:3] for f in (sc.get(step) or {})} - set(extracted)
    for field in sorted(derived):
        lines.append(f"| – | `{field}` | {_rules_for(field, entity_type, scopes)} |")
    lines.append("")
    return lines


def _native(spec: object) -> str:
    if isinstance(spec, str):
        return f"`{spec}`"
    if "const" in spec:  # type: ignore[operator]
        return f"constant `{spec['const']!r}`"  # type: ignore[index]
    paths = spec.get("first") or [spec.get("path")]  # type: ignore[union-attr]
    text = " or ".join(f"`{p}`" for p in paths)
    if spec.get("default") is not None:  # type: ignore[union-attr]
        text += f" (default `{spec['default']!r}`)"  # type: ignore[index]
    return text


def _rules_for(field: str, entity_type: str, scopes: tuple[tuple[str, dict], ...]) -> str:
    names = []
    for step in STEPS[1:]:  # the order they run in
        for scope, section in scopes:
            spec = (section.get(step) or {}).get(field)
            if spec is None:
                continue
            for op in _op_names(spec):
                names.append(f"`{scope}.{entity_type}.{step}.{field}.{op}`")
    if field.startswith("_"):
        users = sorted({f"{step} `{target}`" for _, section in scopes for step in STEPS[1:]
                        for target, spec in (section.get(step) or {}).items() if _mentions(spec, field)})
        names.append("working value, used by " + ", ".join(users) if users else "working value")
    return "<br>".join(names) or "–"


def _op_names(spec: object) -> list[str]:
    items = spec if isinstance(spec, list) else [spec]
    names: list[str] = []
    for item in items:
        names.extend([item] if isinstance(item, str) else [str(k) for k in item])
    return names


def _mentions(spec: object, name: str) -> bool:
    if isinstance(spec, str):
        return spec == name
    if isinstance(spec, dict):
        return any(_mentions(k, name) or _mentions(v, name) for k, v in spec.items())
    if isinstance(spec, list):
        return any(_mentions(v, name) for v in spec)
    return False


def render_into(markdown: str, tables: str) -> str:
    """The markdown with the generated part replaced."""
    head, _, rest = markdown.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{tables}\n{END}{tail}"


def main(argv: list[str]) -> None:
    rules_file = Path(argv[0]) if argv else DEFAULT_RULES
    doc = Path(argv[1]) if len(argv) > 1 else DEFAULT_DOC
    doc.write_text(render_into(doc.read_text(), mapping_tables(rules_file)))


if __name__ == "__main__":
    main(sys.argv[1:])
