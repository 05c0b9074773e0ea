"""Replay arithmetic without a broker: new offsets per reset kind and re-read counts."""

from __future__ import annotations

import pytest

from syncflow.errors import OpsError
from syncflow.streams.admin import partition_lag
from syncflow.ops.replay import PartitionPlan, ResetTo, plan, target_offsets
from syncflow.ops.times import parse_time

MARKS = {("t", 0): (10, 50), ("t", 1): (0, 5)}


def test_earliest_latest_and_clamped_offset() -> None:
    assert target_offsets(ResetTo("earliest"), MARKS) == {("t", 0): 10, ("t", 1): 0}
    assert target_offsets(ResetTo("latest"), MARKS) == {("t", 0): 50, ("t", 1): 5}
    assert target_offsets(ResetTo("offset", 3), MARKS) == {("t", 0): 10, ("t", 1): 3}
    assert target_offsets(ResetTo("offset", 99), MARKS) == {("t", 0): 50, ("t", 1): 5}


def test_time_without_a_newer_record_goes_to_the_end() -> None:
    assert target_offsets(ResetTo("time", 123), MARKS, {("t", 0): 20, ("t", 1): -1}) == {("t", 0): 20, ("t", 1): 5}


def test_rereads_and_skips() -> None:
    [p0, p1] = plan({("t", 0): 40}, MARKS, {("t", 0): 10, ("t", 1): 3})
    assert (p0.current, p0.rereads, p0.skips) == (40, 30, 0)
    assert (p1.current, p1.rereads) == (None, 2)  # never committed: re-reads from new to the end
    forward = PartitionPlan("t", 0, current=10, new=50, low=10, high=50)
    assert (forward.rereads, forward.skips) == (0, 40)


def test_lag_counts_from_the_committed_offset_or_the_oldest_record() -> None:
    assert partition_lag(40, 10, 50) == 10
    assert partition_lag(None, 10, 50) == 40
    assert partition_lag(3, 10, 50) == 40  # committed offset already deleted by retention
    assert partition_lag(60, 10, 50) == 0


def test_parse_time() -> None:
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # no zone: UTC
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(OpsError):
        parse_time("yesterday")
    with pytest.raises(OpsError):
        target_offsets(ResetTo("offset"), MARKS)
