"""How the end-to-end benchmark matches a source change to its version and target receipt:
pure data in, no services."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.end_to_end import Change, latencies  # noqa: E402

KEY = ("yardi", "location", "Y-1")


def receipt(external_id: str, version: int, at: float) -> dict:
    return {"external_id": external_id, "version": version, "time": at}


def test_change_matches_its_version_and_first_receipt_of_it() -> None:
    changes = [Change("yardi", "location", "Y-1", at=100.0)]
    versions = {KEY: [(50.0, "loc-1", 1), (103.0, "loc-1", 2)]}
    received = {"one": [receipt("loc-1", 1, 60.0), receipt("loc-1", 2, 104.5), receipt("loc-1", 2, 110.0)],
                "lessen360": [receipt("loc-1", 1, 61.0)]}  # never got version 2
    lat = latencies(changes, versions, received)
    assert lat.per_target == {"one": [pytest.approx(4.5)], "lessen360": []}
    assert lat.to_version == [pytest.approx(3.0)]
    assert lat.version_to_target == [pytest.approx(1.5)]
    assert lat.left_out == 0


def test_a_later_version_counts_when_the_target_skipped_a_stale_one() -> None:
    changes = [Change("yardi", "location", "Y-1", at=100.0)]
    versions = {KEY: [(101.0, "loc-1", 2)]}
    lat = latencies(changes, versions, {"one": [receipt("loc-1", 3, 107.0)]})
    assert lat.per_target["one"] == [pytest.approx(7.0)]


def test_change_without_its_own_version_is_left_out() -> None:
    # The first change produced nothing; the version after it belongs to the second change.
    changes = [Change("yardi", "location", "Y-1", at=100.0), Change("yardi", "location", "Y-1", at=110.0)]
    versions = {KEY: [(112.0, "loc-1", 2)]}
    lat = latencies(changes, versions, {"one": [receipt("loc-1", 2, 113.0)]})
    assert lat.per_target["one"] == [pytest.approx(3.0)]
    assert lat.left_out == 1
