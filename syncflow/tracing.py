"""Trace context of HTTP calls (W3C `traceparent`, `X-Request-Id`): the trace id a record
carries in its Kafka `trace-id` header (streams/headers.py), as targets receive it and as
pushing sources send it. Shared by the target clients and the ingest API."""

from __future__ import annotations

import hashlib

TRACEPARENT = "traceparent"  # W3C Trace Context, on calls to targets
REQUEST_ID = "X-Request-Id"  # the trace id as it is, on calls to targets
_HEX = frozenset("0123456789abcdef")


def w3c_trace_id(trace_id: str) -> str:
    """The 32 lowercase hex digits W3C Trace Context wants, derived from a syncflow trace id:
    the id itself when it already is one (a connector's uuid4 hex, dashes ignored), else the
    first 32 hex digits of its SHA-256, so one trace id always maps to one W3C id."""
    text = trace_id.strip().lower().replace("-", "")
    if len(text) == 32 and set(text) <= _HEX and text != "0" * 32:
        return text
    return hashlib.sha256(trace_id.encode("utf-8", "backslashreplace")).hexdigest()[:32]


def traceparent(trace_id: str, span: str) -> str:
    """`00-<trace id>-<parent id>-01`: the parent id is derived from `span` (for a target
    call: the idempotency key), so a retried call names the same span."""
    parent = hashlib.sha256(span.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    if parent == "0" * 16:
        parent = "0" * 15 + "1"
    return f"00-{w3c_trace_id(trace_id)}-{parent}-01"


def trace_id_of_traceparent(value: str | None) -> str | None:
    """The trace id of a `traceparent` header (version 00 form), None when it is not one."""
    parts = (value or "").strip().lower().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or not set(parts[1]) <= _HEX or parts[1] == "0" * 32:
        return None
    return parts[1]
