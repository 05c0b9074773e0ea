"""Fixtures of the sinks' integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncflow.sinks.raw_store import RawRecordStore
from syncflow.settings import Settings


@pytest.fixture
def store(settings: Settings) -> Iterator[RawRecordStore]:
    """A raw store on the test's own MongoDB database, with its indexes."""
    s = RawRecordStore(settings)
    s.ensure_indexes()
    yield s
    s.close()
