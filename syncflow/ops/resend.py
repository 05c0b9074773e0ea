"""What reconcile --heal and resync share: the payload syncflow would send for an entity's
latest version, reads of a target under the group's rate limit, and the forced resend of
latest versions through the target's normal sync-out path.

A forced resend is the entity's latest change event, built from data_versions with the same
code the outbox uses, produced to the target's first retry tier `sync-out.<target>.retry.1`:
only that target's group reads it, and its workers apply the rate limit, dependencies, the
per-entity lock, the sent_version compare-and-set and the DLQ routing as for any event. Two
things make it really sent (see sinks/common_db/latest.py and docs/operations.md):

- `force_resend` lowers target_sync_state.synced_version from that version to the one before
  (only when nothing newer was sent), so the worker's stale check lets it through;
- its event_id is `<entity_id>:<version>/<resend id>`, which becomes the call's idempotency
  key: the plain key `<entity_id>:<version>` was applied before, and the target would answer
  it from its idempotency store without applying anything."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Engine

from syncflow.agents.change_events import change_event_headers
from syncflow.agents.sync_out.rate_limit import RateLimiter
from syncflow.agents.sync_out.transform import Transformer
from syncflow.errors import OpsError, RateLimitedError, TransientTargetError
from syncflow.model import CHANGE_EVENT_SCHEMA, ChangeEvent
from syncflow.sinks.common_db.latest import Latest, force_resend, unforce_resend
from syncflow.sinks.common_db.rate_buckets import bucket_exists
from syncflow.sinks.targets.base import Delivery, TargetClient
from syncflow.streams.avro import AvroCodec
from syncflow.streams.headers import RESEND
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings
from syncflow.streams.topics import retry_topic

T = TypeVar("T")


def new_resend_id(action: str) -> str:
    """`<action>-<UTC time>-<random>`: one per run, part of every idempotency key it sends."""
    return f"{action}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def event_of(latest: Latest) -> ChangeEvent:
    """The change event of the latest version as a sync-out worker decodes it."""
    return ChangeEvent.from_record(ChangeEvent.from_version(latest.version).to_record())


def expected_delivery(transformer: Transformer, latest: Latest) -> Delivery:
    """The call syncflow makes for this version (its payload JSON-normalised, as the target
    stores what it parsed)."""
    d = transformer.to_delivery(event_of(latest))
    if d.payload is None:
        return d
    return Delivery(d.entity_type, d.entity_id, d.version, d.op, d.resource, json.loads(json.dumps(d.payload, default=str)),
                    d.trace_id, d.resend)


def is_echo(settings: Settings, target: str, latest: Latest) -> bool:
    """The latest version came from the target itself: sync-out does not send it back."""
    return settings.sync_out.targets[target].echo_suppression and latest.version.source_system == target


class LimitedReader:
    """Calls to a target's read side, each taking one token of the target's group-wide bucket
    (the same row the sync-out workers take theirs from). A 429 blocks the whole group for its
    Retry-After (as a worker does) and the call is made again; a transient failure is tried
    `attempts` times."""

    def __init__(self, client: TargetClient, limiter: RateLimiter, attempts: int = 4):
        self.client, self.limiter, self.attempts = client, limiter, attempts
        self.calls = 0
        self.waited_s = 0.0

    async def _token(self) -> None:
        while True:
            grant = await asyncio.to_thread(self.limiter.try_acquire, 1)
            if grant.granted:
                return
            wait = max(0.02, min(grant.wait_s, 5.0))
            self.waited_s += wait
            await asyncio.sleep(wait)

    async def __call__(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        failures = 0
        while True:
            await self._token()
            self.calls += 1
            try:
                return await fn(*args)
            except RateLimitedError as exc:
                await asyncio.to_thread(self.limiter.block_for, exc.retry_after)
            except TransientTargetError:
                failures += 1
                if failures >= self.attempts:
                    raise
                await asyncio.sleep(0.2 * 2 ** failures)


def limiter_for(settings: Settings, engine: Engine, target: str) -> RateLimiter:
    """The target's group-wide bucket. Its row is written from these settings only when no
    worker has written it yet: the workers' rate wins over an operator's shell."""
    t = settings.sync_out.targets[target]
    limiter = RateLimiter(engine, target, t.rate_per_minute, t.rate_burst_s)
    if not bucket_exists(engine, target):
        limiter.ensure()
    return limiter


@dataclass(frozen=True)
class ResendOutcome:
    sent: list[Latest]
    superseded: list[Latest]  # a newer version was sent meanwhile: nothing to resend
    topic: str


def resend(settings: Settings, engine: Engine, codec: AvroCodec, target: str, items: list[Latest], resend_id: str,
           *, timeout: float = 60.0) -> ResendOutcome:
    """Make each item's latest version sendable again and produce its change event (marked
    as a forced resend) to the target's first retry tier. When Kafka does not take them,
    the lowering is undone and OpsError raised."""
    topic = retry_topic(target, 1) + settings.sync_out.topic_suffix
    if not items:
        return ResendOutcome([], [], topic)
    versions = {i.key: i.version.version_number for i in items}
    sendable = force_resend(engine, target, versions)
    sent = [i for i in items if i.key in sendable]
    superseded = [i for i in items if i.key not in sendable]
    records = []
    for item in sent:
        record = ChangeEvent.from_version(item.version, resend=resend_id).to_record()
        records.append(OutgoingRecord(topic, item.version.entity_id.encode(), codec.encode(CHANGE_EVENT_SCHEMA, record, topic=topic),
                                      change_event_headers(item.version) + [(RESEND, resend_id.encode())]))
    producer = ReliableProducer(settings)
    try:
        producer.send_all(records, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - NotAcknowledgedError, or whatever the producer raised: undo
        unforce_resend(engine, target, {i.key: i.version.version_number for i in sent})
        raise OpsError(f"the resends to {topic} were not acknowledged ({exc}); nothing was changed") from exc
    finally:
        producer.close(5)
    return ResendOutcome(sent, superseded, topic)


def field_diff(ours: Any, theirs: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level differences between the payload syncflow would send and what the target
    holds: [{field, target, syncflow}] by dotted path, nested objects walked."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out: list[dict[str, Any]] = []
        for k in sorted(set(ours) | set(theirs), key=str):
            out += field_diff(ours.get(k), theirs.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if ours == theirs else [{"field": path or "(record)", "target": theirs, "syncflow": ours}]
