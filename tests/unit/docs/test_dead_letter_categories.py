"""docs/dead-letters.md lists every category a record can be dead-lettered with: the error
classes in the code and the doc cannot drift apart silently."""

from __future__ import annotations

import importlib
import pkgutil
import re

import syncflow
from syncflow.errors import SyncflowError
from syncflow.settings import REPO_ROOT

NOT_DEAD_LETTER_CATEGORIES = {
    "internal",  # the root's default: every raised error has its own
    "bad-input",  # an abstract base: its subclasses name the kind
    "config",  # refused at start-up, never routed
    "ops",  # an operations command's answer to its user
}


def all_error_classes() -> set[type[SyncflowError]]:
    for module in pkgutil.walk_packages(syncflow.__path__, "syncflow."):
        if ".emulators" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[SyncflowError]] = set()
    todo = [SyncflowError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_category_in_the_code_is_documented() -> None:
    doc = (REPO_ROOT / "docs" / "dead-letters.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", doc, flags=re.MULTILINE))
    categories = {cls.category for cls in all_error_classes()} - NOT_DEAD_LETTER_CATEGORIES
    assert categories - documented == set(), f"categories missing from docs/dead-letters.md: {categories - documented}"
    assert documented - categories == set(), f"docs/dead-letters.md lists categories the code has not: {documented - categories}"
