"""Engines for the rules tests: the real rules file and a small synthetic one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from syncflow.agents.rules import RulesEngine
from syncflow.agents.rules.schemas import load_canonical_schemas

HERE = Path(__file__).parent
REPO = HERE.parents[3]
RULES_FILE = REPO / "syncflow" / "agents" / "rules" / "sync_in.yaml"
ACME_RULES = HERE / "data" / "acme_rules.yaml"

# The tests import their shared assertions from rules_test_helpers.py beside this file.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def engine() -> RulesEngine:
    return RulesEngine.from_file(RULES_FILE)


@pytest.fixture(scope="session")
def acme() -> RulesEngine:
    return RulesEngine.from_file(ACME_RULES)


@pytest.fixture(scope="session")
def schemas():
    return load_canonical_schemas()
