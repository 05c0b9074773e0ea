"""The layers of syncflow and the one-way arrows between them (docs/architecture.md).

Every module of the package belongs to a component (`syncflow.agents`, `syncflow.settings`,
…) and every component to a layer. A module may import its own component and any component
of a lower layer; never one of its own layer or above. And no two modules may import each
other, directly or around a loop. Imports are read from the source (AST), all of them:
module level, inside functions and under `if TYPE_CHECKING:`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "syncflow"

# Top first. A component imports only itself and the layers below its own.
LAYERS: list[tuple[str, list[str]]] = [
    ("`python -m syncflow`", ["syncflow.__main__"]),
    ("the command line", ["syncflow.cli"]),
    ("composition roots and the demo harness", ["syncflow.roles", "syncflow.demo"]),
    ("operations", ["syncflow.ops"]),
    ("emulated source and target systems", ["syncflow.emulators"]),
    ("workers", ["syncflow.agents", "syncflow.connectors"]),
    ("input/output", ["syncflow.sinks", "syncflow.streams"]),
    ("shared types", ["syncflow.settings", "syncflow.model", "syncflow.tracing"]),
    ("settings names and masking", ["syncflow.settings_check"]),
    ("errors", ["syncflow.errors"]),
]

# Imports against the direction tolerated for now, as (importer, imported) modules: none, and
# a change that needs one should change the layout instead.
ALLOWED_UPWARD: set[tuple[str, str]] = set()

# Import cycles tolerated for now, each as the set of modules on it: none.
ALLOWED_CYCLES: list[set[str]] = []


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _module_of(name: str) -> str | None:
    """The module an imported name lives in: `syncflow.a.b.C` → `syncflow.a.b`."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every syncflow module `module` imports, wherever in its body the import stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "syncflow" or target.startswith("syncflow."):
                resolved = _module_of(target)
                if resolved and resolved != module:
                    found.add(resolved)
    return found


def component_of(module: str) -> str:
    for _, components in LAYERS:
        for component in components:
            if module == component or module.startswith(component + "."):
                return component
    raise AssertionError(f"{module} belongs to no component of LAYERS: add it to the table")


def layer_of(component: str) -> int:
    return next(i for i, (_, components) in enumerate(LAYERS) if component in components)


def graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in MODULES if module != "syncflow"}


def against_the_direction(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    wrong = set()
    for importer, imported in ((a, b) for a, targets in edges.items() for b in targets):
        if imported == "syncflow":
            continue
        mine, theirs = component_of(importer), component_of(imported)
        if mine != theirs and layer_of(theirs) <= layer_of(mine):
            wrong.add((importer, imported))
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(members)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "syncflow":
            component_of(module)


def test_imports_point_down() -> None:
    wrong = against_the_direction(graph())
    assert wrong - ALLOWED_UPWARD == set(), "imports against the layers (see LAYERS): " + ", ".join(
        f"{a} → {b}" for a, b in sorted(wrong - ALLOWED_UPWARD)
    )
    assert ALLOWED_UPWARD - wrong == set(), f"fixed, remove from ALLOWED_UPWARD: {sorted(ALLOWED_UPWARD - wrong)}"


def test_no_import_cycles() -> None:
    found = cycles(graph())
    new = [c for c in found if c not in ALLOWED_CYCLES]
    assert new == [], f"import cycles: {[sorted(c) for c in new]}"
    gone = [c for c in ALLOWED_CYCLES if c not in found]
    assert gone == [], f"broken, remove from ALLOWED_CYCLES: {[sorted(c) for c in gone]}"


def test_the_checks_see_what_they_should() -> None:
    """The checker itself: a function-level import is seen, a loop is found, an upward
    import is reported."""
    edges = {"syncflow.sinks.x": {"syncflow.agents.y"}, "syncflow.agents.y": {"syncflow.sinks.x"}}
    assert against_the_direction(edges) == {("syncflow.sinks.x", "syncflow.agents.y")}
    assert cycles(edges) == [{"syncflow.sinks.x", "syncflow.agents.y"}]
    assert "syncflow.sinks.common_db.migrate" in imports_of("syncflow.roles.sync_out")  # inside serve_sync_out
