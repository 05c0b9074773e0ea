"""Names of the Kafka record headers syncflow writes and reads (dead-letter headers are in
dead_letters.py; the trace headers of HTTP calls are in syncflow/tracing.py)."""

from __future__ import annotations

SOURCE_SYSTEM = "source-system"
ENTITY_TYPE = "entity-type"
BATCH_NUMBER = "batch-number"
EXTRACTION_TIME = "extraction-time"  # ISO-8601 UTC
TRACE_ID = "trace-id"
PRIORITY = "priority"  # on change events, so sync-out can order without decoding
TRANSIENT_FAILURES = "transient-failures"  # on sync-out retries: transient failures so far
# syncflow's own (prefix "syncflow."): they survive the DLQ's header cuts (dead_letters.OWN_PREFIX)
REDRIVE_COUNT = "syncflow.redrive.count"  # times `syncflow dlq redrive` sent the record back
RESEND = "syncflow.resend"  # a forced resend's id (reconcile --heal, resync)
INJECTED = "syncflow.injected"  # a bad record a test or the demo produced on purpose: its case


def header_value(headers: list[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or []:
        if key == name and value is not None:
            return value.decode(errors="replace")
    return None
