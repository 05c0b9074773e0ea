"""Failure headers say what went wrong without logs, and survive a round trip."""

from __future__ import annotations

from syncflow.errors import FieldError, PermanentTargetError, ValidationError
from syncflow.streams.dead_letters import FailureContext, carry_headers, failure_headers, read_failure_headers


def test_failure_headers_round_trip_with_the_error_details() -> None:
    error = ValidationError([FieldError("yardi.email.format", "requestor_email", "x@", "not an email")])
    ctx = FailureContext("raw.yardi", 3, 42, 1700000000000, "sync-in", error, rule=error.rule)
    headers = read_failure_headers(failure_headers(ctx))
    assert headers["original.topic"] == "raw.yardi"
    assert headers["original.partition"] == "3"
    assert headers["original.offset"] == "42"
    assert headers["error.category"] == "validation"
    assert headers["exception.class"] == "syncflow.errors.ValidationError"
    assert headers["rule"] == "yardi.email.format"
    assert "requestor_email" in headers["exception.message"]


def test_http_status_and_attempts_are_recorded_for_targets() -> None:
    ctx = FailureContext("changes.location", 0, 1, 0, "sync-out.one", PermanentTargetError("bad", 422), attempt=3,
                         http_status=422, target="one", first_failure_ms=123)
    headers = read_failure_headers(failure_headers(ctx))
    assert headers["error.category"] == "permanent"
    assert headers["http.status"] == "422"
    assert headers["attempt"] == "3"
    assert headers["first.failure"] == "123"


def test_carry_headers_drops_failure_headers_only() -> None:
    ctx = FailureContext("t", 0, 0, 0, "g", RuntimeError("boom"))
    mixed = [("trace-id", b"abc"), *failure_headers(ctx)]
    assert carry_headers(mixed) == [("trace-id", b"abc")]
    assert read_failure_headers(mixed)["error.category"] == "internal"
