"""Dead-letter and retry record headers, in the spirit of Kafka Connect and Spring Kafka.

A person reading a DLQ record understands the failure without logs; `syncflow dlq redrive`
reads the same headers to send the record back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from syncflow.errors import SyncflowError
from syncflow.streams.producer import OutgoingRecord

PREFIX = "syncflow.dlt."


@dataclass(frozen=True)
class FailureContext:
    """Where the failing record came from and what went wrong."""

    original_topic: str
    original_partition: int
    original_offset: int
    original_timestamp_ms: int
    consumer_group: str
    error: BaseException
    attempt: int = 1
    first_failure_ms: int | None = None
    rule: str | None = None
    http_status: int | None = None
    target: str | None = None

    @property
    def category(self) -> str:
        return self.error.category if isinstance(self.error, SyncflowError) else "internal"


def failure_headers(ctx: FailureContext) -> list[tuple[str, bytes]]:
    now_ms = int(time.time() * 1000)
    values: dict[str, object] = {
        "original.topic": ctx.original_topic,
        "original.partition": ctx.original_partition,
        "original.offset": ctx.original_offset,
        "original.timestamp": ctx.original_timestamp_ms,
        "consumer.group": ctx.consumer_group,
        "attempt": ctx.attempt,
        "error.category": ctx.category,
        "exception.class": f"{type(ctx.error).__module__}.{type(ctx.error).__qualname__}",
        "exception.message": str(ctx.error)[:4000],
        "first.failure": ctx.first_failure_ms or now_ms,
        "failed.at": now_ms,
    }
    if ctx.rule:
        values["rule"] = ctx.rule
    if ctx.http_status is not None:
        values["http.status"] = ctx.http_status
    if ctx.target:
        values["target"] = ctx.target
    return [(PREFIX + k, str(v).encode()) for k, v in values.items()]


def read_failure_headers(headers: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The syncflow.dlt.* headers of a record as {name-without-prefix: value}."""
    out: dict[str, str] = {}
    for key, value in headers or []:
        if key.startswith(PREFIX) and value is not None:
            out[key[len(PREFIX):]] = value.decode(errors="replace")
    return out


def carry_headers(headers: list[tuple[str, bytes | None]] | None) -> list[tuple[str, bytes]]:
    """The record's own headers without any failure headers (kept on retry and redrive)."""
    return [(k, v) for k, v in headers or [] if not k.startswith(PREFIX) and v is not None]


OWN_PREFIX = "syncflow."  # syncflow's own headers (the redrive count) survive every cut
VALUE_REPLACED = PREFIX + "value.replaced"  # "pointer": the value is where the original sits
RETRY_DUE = "retry.due"  # failure header (without prefix): epoch ms when a sync-out retry is due
RETRY_DUE_HEADER = PREFIX + RETRY_DUE
RECORD_OVERHEAD = 512  # Kafka's per-record framing, and room for a header or two


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """Bytes a record takes against a topic's max.message.bytes (a safe over-estimate)."""
    return (len(key or b"") + len(value or b"") + sum(len(k) + len(v) + 8 for k, v in headers)
            + RECORD_OVERHEAD)


def dead_letter(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    ctx: FailureContext,
    max_bytes: int,
) -> OutgoingRecord:
    """The DLQ copy of a failed record: its own key, value and headers plus the failure
    headers. A copy that would not fit the topic (a near-limit record plus failure headers)
    is still dead-lettered: its value becomes a pointer to where the original sits (topic,
    partition, offset) with a header saying so, and, if even that is too large, its key is
    cut and its own headers dropped but syncflow's own (the redrive count). Nothing is
    left out silently."""
    failure = failure_headers(ctx)
    out = headers + failure
    if record_size(key, value, out) <= max_bytes:
        return OutgoingRecord(topic, key, value, out)
    pointer = json.dumps({
        "value.replaced": "the original record is too large to copy here with its failure headers",
        "original.topic": ctx.original_topic,
        "original.partition": ctx.original_partition,
        "original.offset": ctx.original_offset,
        "original.size": record_size(key, value, headers) - RECORD_OVERHEAD,
    }).encode()
    out = headers + failure + [(VALUE_REPLACED, b"pointer")]
    if record_size(key, pointer, out) > max_bytes:
        key = (key or b"")[:256]
        own = [(k, v) for k, v in headers if k.startswith(OWN_PREFIX) and len(v) <= 256]  # e.g. the redrive count
        out = own + failure + [(VALUE_REPLACED, b"pointer")]
    return OutgoingRecord(topic, key, pointer, out)
