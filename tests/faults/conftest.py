"""`pytest tests/faults --soak` (what `make soak` runs): the fault run on its soak plan."""

from __future__ import annotations

import pytest

SOAK_TIMEOUT_S = 7200


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the fault-injection test on the soak plan (50,000+ raw records, every fault "
                          "more than once) and write bench/SOAK.md")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        for item in items:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT_S))


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak"))
