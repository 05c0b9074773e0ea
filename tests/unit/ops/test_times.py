"""Times in and out of the operations commands."""

from __future__ import annotations

from datetime import datetime, timezone

from syncflow.ops.times import iso_ms, parse_moment


def test_parse_moment_is_parse_time_as_a_utc_datetime() -> None:
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert parse_moment("2023-11-14T22:13:20") == moment  # no zone: UTC
    assert parse_moment("2023-11-14T23:13:20+01:00") == moment
    assert parse_moment("1700000000000") == moment
    assert parse_moment(None) is None and parse_moment("") is None


def test_iso_ms_prints_utc_with_milliseconds() -> None:
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123+00:00"
