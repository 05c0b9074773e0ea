"""One batch of change events for one target, from taken records to recorded outcomes:
filter → echo → lock → stale / dependency check → transform → rate limit → deliver →
record (retry/DLQ produce acknowledged, target_sync_state, raw store status).

The decisions are decisions.py's plain functions; this module does the batched I/O around
them and reports which records are finished and which go back into the buffer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

from syncflow.agents.sync_out.decisions import (
    Route,
    is_echo,
    is_stale,
    missing_references,
    references_of,
    route_failure,
    waits_for_batch,
)
from syncflow.model import ChangeEvent, EntityKey
from syncflow.agents.sync_out.priority import Entry
from syncflow.agents.sync_out.rate_limit import Grant, RateLimiter
from syncflow.sinks.common_db import parked
from syncflow.sinks.common_db.parked import ParkedRecord
from syncflow.sinks.common_db.target_state import (
    DeliveryFailed,
    LockedState,
    Synced,
    SyncStateStore,
    storable_text,
    target_ref_problem,
)
from syncflow.agents.sync_out.transform import Transformer
from syncflow.errors import (
    BadAnswerError,
    DependencyNotMetError,
    RateLimitedError,
    RetryLaterError,
    SyncflowError,
    UnusableAnswerError,
)
from syncflow.sinks.targets.base import Delivery, DeliveryResult, TargetClient
from syncflow.streams.dead_letters import RETRY_DUE_HEADER, FailureContext, carry_headers, failure_headers
from syncflow.streams.headers import TRACE_ID, TRANSIENT_FAILURES, header_value
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.records import KafkaRecord
from syncflow.settings import SyncOutSettings, TargetSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consumed(KafkaRecord):
    """A record taken from a changes topic or a retry tier, decoded once on arrival."""

    event: ChangeEvent | None
    error: SyncflowError | None  # why it could not be decoded
    attempt: int = 1  # this try's number
    failure: dict[str, str] = field(default_factory=dict)  # failure headers of earlier tries

    @property
    def entity_key(self) -> EntityKey | None:
        return (self.event.entity_type, self.event.entity_id) if self.event else None


class OutboundStatusSink(Protocol):
    """The raw store's per-target outbound status (raw_status.OutboundStatusWriter in front of
    sinks/raw_store.RawRecordStore): must return at once."""

    def set_outbound_statuses(self, items: list[tuple[str, str, str, str, str]]) -> object: ...


@dataclass(frozen=True)
class Outcome:
    """What happened to one record in a batch (for metrics)."""

    entity_type: str  # "?" when the record could not be decoded
    topic: str
    kind: str  # delivered | stale | echo | not-taken | retry | dlq | rate-limited | held-back
    category: str | None = None
    tier: int = 0
    priority: int = 0  # the change event's, 0 when undecodable
    changed_at_ms: int = 0  # ChangeEvent.changed_at_ms: the source's change time (freshness)


@dataclass
class SyncOutBatchResult:
    done: list[Entry[Consumed]] = field(default_factory=list)  # outcome recorded
    put_back: list[Entry[Consumed]] = field(default_factory=list)  # try again later
    not_before_s: float = 0.0  # monotonic time before which no new batch is worth starting
    counts: Counter[str] = field(default_factory=Counter)
    outcomes: list[Outcome] = field(default_factory=list)
    call_seconds: float = 0.0  # time spent in the target call, 0 when none was made

    def note(self, entry: Entry[Consumed], kind: str, count_as: str, category: str | None = None, tier: int = 0) -> None:
        c, e = entry.item, entry.item.event
        self.counts[count_as] += 1
        self.outcomes.append(Outcome(e.entity_type if e else "?", c.topic, kind, category, tier,
                                     e.priority if e else 0, e.changed_at_ms if e else 0))


@dataclass
class _Outcomes:
    synced: list[Synced] = field(default_factory=list)
    failed: list[DeliveryFailed] = field(default_factory=list)
    produce: list[OutgoingRecord] = field(default_factory=list)
    raw_status: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    parked: list[ParkedRecord] = field(default_factory=list)  # in the DLQ for a missing reference


class BatchProcessor:
    def __init__(
        self,
        target: str,
        target_settings: TargetSettings,
        sync_out: SyncOutSettings,
        *,
        group: str,
        retry_topics: list[str],
        dependency_topic: str,
        dlq_topic: str,
        client: TargetClient,
        transformer: Transformer,
        state: SyncStateStore,
        limiter: RateLimiter,
        producer: ReliableProducer,
        outbound: OutboundStatusSink | None = None,
    ):
        self.target, self.target_settings, self.sync_out = target, target_settings, sync_out
        self.group, self.retry_topics, self.dlq_topic = group, retry_topics, dlq_topic
        self.dependency_topic = dependency_topic  # the dependency-wait lane (one delay: see decisions.route_failure)
        self.client, self.transformer, self.state = client, transformer, state
        self.limiter, self.producer, self.outbound = limiter, producer, outbound
        # entity types this target receives: configured and with a transform rule
        self.taken_types = {t for t in target_settings.entity_types if transformer.takes(t)}

    def takes(self, event: ChangeEvent) -> bool:
        return event.entity_type in self.taken_types

    def close(self) -> None:
        """Release the lock session and the connection pool (built for this worker alone)."""
        self.state.close()
        self.state.engine.dispose()
        self.producer.close(timeout=10)
        if self.outbound is not None and hasattr(self.outbound, "close"):
            self.outbound.close()

    async def process(self, entries: list[Entry[Consumed]], in_flight: Collection[EntityKey] = frozenset()) -> SyncOutBatchResult:
        """Handle entries of distinct entities; every entry ends in `done` or `put_back`.
        `in_flight`: entities of the worker's other batches in flight; a record waiting only
        for those follows in a later batch, as for a reference in its own batch."""
        result, out = SyncOutBatchResult(), _Outcomes()
        candidates: list[Entry[Consumed]] = []
        for entry in entries:
            c = entry.item
            if c.event is None:
                self._fail(out, result, entry, c.error or SyncflowError("undecodable record"))
            elif not self.takes(c.event):
                result.done.append(entry)
                result.note(entry, "not-taken", "not-taken")
            elif is_echo(c.event, self.target, self.target_settings.echo_suppression):
                self._synced(out, result, entry, c.event.origin_source_id or None)
                result.note(entry, "echo", "echo")
            else:
                candidates.append(entry)

        locked: set[EntityKey] = set()
        released = False
        try:
            state = LockedState(set(), {}, {})
            if candidates:
                keys = [e.item.entity_key for e in candidates]
                references = {r for e in candidates for r in references_of(e.item.event, self.taken_types)}  # type: ignore[arg-type]
                state = await asyncio.to_thread(self.state.lock_and_read, keys, references)  # type: ignore[arg-type]
                locked = state.locked
            mine = [e for e in candidates if e.item.entity_key in locked]
            result.put_back += [e for e in candidates if e.item.entity_key not in locked]
            to_send = self._check(mine, state, out, result, in_flight)
            await self._send(to_send, out, result)
            await self._record(out, locked)
            released = True  # with the outcomes (on an error there, with the lock session)
        finally:
            if locked and not released:
                await asyncio.to_thread(self.state.unlock, locked)
        return result

    def _check(self, entries: list[Entry[Consumed]], state: LockedState, out: _Outcomes,
               result: SyncOutBatchResult, in_flight: Collection[EntityKey] = frozenset()) -> list[tuple[Entry[Consumed], Delivery]]:
        """Stale and dependency checks against target_sync_state as read under the locks,
        then the transform."""
        if not entries:
            return []
        taken = self.taken_types
        versions, sent = state.synced, state.sent
        fresh = {e.item.entity_key for e in entries  # type: ignore[misc]
                 if not is_stale(e.item.event, versions.get(e.item.entity_key, 0), sent.get(e.item.entity_key, 0))}  # type: ignore[arg-type]
        on_their_way = fresh | set(in_flight)
        to_send = []
        for entry in entries:
            event = entry.item.event
            assert event is not None
            if entry.item.entity_key not in fresh:
                result.done.append(entry)
                result.note(entry, "stale", "stale")
            elif missing := missing_references(event, versions, taken):
                if waits_for_batch(missing, on_their_way):
                    result.put_back.append(entry)  # its reference goes now: it follows in a later batch
                    result.counts["deferred"] += 1
                else:
                    self._fail(out, result, entry, DependencyNotMetError(missing))
            else:
                try:
                    to_send.append((entry, self.transformer.to_delivery(event)))
                except SyncflowError as exc:
                    self._fail(out, result, entry, exc)
        return to_send

    async def _send(self, to_send: list[tuple[Entry[Consumed], Delivery]], out: _Outcomes, result: SyncOutBatchResult) -> None:
        """Take tokens, call the target, sort the answers into outcomes."""
        if not to_send:
            return
        sending = {e.item.entity_key: e.item.event.version for e, _ in to_send}  # type: ignore[union-attr]
        grant, claimed = await asyncio.to_thread(self._take_tokens_and_claim, sending)  # type: ignore[arg-type]
        if grant.granted < len(to_send):
            result.put_back += [e for e, _ in to_send[grant.granted :]]
            result.not_before_s = time.monotonic() + max(grant.wait_s, 0.005)
            to_send = to_send[: grant.granted]
        for entry, _ in to_send:
            if entry.item.entity_key not in claimed:  # a newer version was sent meanwhile
                result.done.append(entry)
                result.note(entry, "stale", "stale")
        to_send = [(e, d) for e, d in to_send if e.item.entity_key in claimed]
        if not to_send:
            return
        started = time.perf_counter()
        answers = await self._deliver([d for _, d in to_send])
        result.call_seconds = time.perf_counter() - started
        retry_after = 0.0
        for (entry, _), answer in zip(to_send, answers):
            if answer.ok and answer.target_ref is not None and (problem := target_ref_problem(answer.target_ref)):
                self._fail(out, result, entry, UnusableAnswerError(problem))
            elif answer.ok:
                self._synced(out, result, entry, answer.target_ref)
                result.note(entry, "delivered", "delivered")
            elif isinstance(answer.error, RateLimitedError):
                retry_after = max(retry_after, answer.error.retry_after)
                result.put_back.append(entry)
                if answer.error.status == 429:
                    result.note(entry, "rate-limited", "rate-limited", "rate-limited")
                else:  # not sent: the target's 429 to another call asked to wait
                    result.note(entry, "held-back", "held-back")
            else:
                self._fail(out, result, entry, answer.error)  # type: ignore[arg-type]
        if retry_after > 0:
            await asyncio.to_thread(self.limiter.block_for, retry_after)
            result.not_before_s = max(result.not_before_s, time.monotonic() + retry_after)

    def _take_tokens_and_claim(self, sending: dict[EntityKey, int]) -> tuple[Grant, set[EntityKey]]:
        """Tokens for the records to send (in order: the first `granted` go), then the claim of
        those (the sent-version compare-and-set): two statements, one trip off the event loop."""
        grant = self.limiter.try_acquire(len(sending))
        granted = dict(list(sending.items())[: grant.granted])
        return grant, self.state.claim(granted)

    async def _deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        """The client's answers, one per delivery. A client that raises or miscounts (a bug:
        clients turn every answer into a result) fails this call's records as bad answers,
        so they take the retry tiers instead of putting the whole batch back for ever."""
        try:
            answers = await self.client.deliver(deliveries)
            if len(answers) == len(deliveries):
                return answers
            problem = f"the {self.target} client gave {len(answers)} results for {len(deliveries)} deliveries"
        except Exception as exc:  # noqa: BLE001 - any client failure is this call's outcome
            log.exception("%s client failed on %d deliveries", self.target, len(deliveries))
            problem = f"the {self.target} client failed: {type(exc).__name__}: {exc}"
        error = BadAnswerError(storable_text(problem)[:2000])
        return [DeliveryResult(d, error=error) for d in deliveries]

    def _synced(self, out: _Outcomes, result: SyncOutBatchResult, entry: Entry[Consumed], target_ref: str | None) -> None:
        event = entry.item.event
        assert event is not None
        if target_ref is not None and target_ref_problem(target_ref):
            target_ref = None  # an echo's source id that the column cannot hold (a delivery's was checked)
        out.synced.append(Synced((event.entity_type, event.entity_id), event.version, target_ref))
        out.raw_status.append((event.origin_source, event.entity_type, event.origin_source_id, self.target, "synced"))
        result.done.append(entry)

    def _fail(self, out: _Outcomes, result: SyncOutBatchResult, entry: Entry[Consumed], error: BaseException) -> None:
        """Route a failed try to its retry tier or the DLQ, with the failure headers."""
        c = entry.item
        transient = int(header_value(c.headers, TRANSIENT_FAILURES) or 0)
        if isinstance(error, RetryLaterError):
            transient += 1
        route: Route = route_failure(error, c.attempt, self.sync_out, transient_failures=transient)
        now = time.time()
        ctx = FailureContext(
            original_topic=c.failure.get("original.topic", c.topic),
            original_partition=int(c.failure.get("original.partition", c.partition)),
            original_offset=int(c.failure.get("original.offset", c.offset)),
            original_timestamp_ms=int(c.failure.get("original.timestamp", c.timestamp_ms)),
            consumer_group=self.group,
            error=error,
            attempt=c.attempt,
            first_failure_ms=int(c.failure["first.failure"]) if "first.failure" in c.failure else None,
            http_status=getattr(error, "status", None),
            target=self.target,
        )
        headers = [h for h in carry_headers(c.headers) if h[0] != TRANSIENT_FAILURES] + failure_headers(ctx)
        headers.append((TRANSIENT_FAILURES, str(transient).encode()))
        if route.kind in ("retry", "wait"):
            due_ms = int((now + route.delay_s) * 1000)
            headers.append((RETRY_DUE_HEADER, str(due_ms).encode()))
            topic = self.retry_topics[route.tier - 1] if route.kind == "retry" else self.dependency_topic
            out.produce.append(OutgoingRecord(topic, c.key, c.value, headers))
            status, next_retry = "retry", datetime.fromtimestamp(due_ms / 1000, tz=timezone.utc)
            result.note(entry, "retry", "retried", ctx.category, route.tier)
        else:
            out.produce.append(OutgoingRecord(self.dlq_topic, c.key, c.value, headers))
            status, next_retry = "failed", None
            result.note(entry, "dlq", "dead-lettered", ctx.category)
            if isinstance(error, DependencyNotMetError) and c.event is not None:
                # sent again, as a new record, once the target holds what it waits for
                fresh = [h for h in carry_headers(c.headers) if h[0] != TRANSIENT_FAILURES]
                out.parked.append(ParkedRecord((c.event.entity_type, c.event.entity_id), c.event.version,
                                               tuple(error.missing), c.key, c.value, fresh))
        if c.event is not None:
            key = (c.event.entity_type, c.event.entity_id)
            message = f"{type(error).__name__}: {error}"
            out.failed.append(DeliveryFailed(key, c.event.version, status, c.attempt, next_retry, message))
            out.raw_status.append((c.event.origin_source, c.event.entity_type, c.event.origin_source_id, self.target, status))
        what = f"{c.event.entity_type}:{c.event.entity_id} v{c.event.version}" if c.event else "undecodable record"
        log.log(logging.ERROR if route.kind == "dlq" else logging.WARNING,
                "%s %s (%s:%s:%s) attempt %d → %s%s: %s", self.target, what, c.topic, c.partition, c.offset, c.attempt,
                route.kind, f" tier {route.tier}" if route.kind == "retry" else "", storable_text(str(error))[:500],
                extra={"trace_id": (c.event.trace_id if c.event else None) or header_value(c.headers, TRACE_ID)})
        result.done.append(entry)

    def release_parked(self) -> int:
        """Send the records parked for a reference the target now holds into the dependency
        lane again (acknowledged before they are forgotten), and stop waiting for those parked
        longer than parked_retention_days. Blocking. Returns how many were sent."""
        engine = self.state.engine
        parked.expire(engine, self.target, datetime.now(timezone.utc) - timedelta(days=self.sync_out.parked_retention_days))

        def send(records: list[ParkedRecord]) -> None:
            self.producer.send_all([OutgoingRecord(self.dependency_topic, r.key, r.value, r.headers) for r in records])
            for r in records:
                log.info("%s %s:%s v%d: %s now at the target; sent again", self.target, r.entity[0], r.entity[1],
                         r.version, ", ".join(f"{t}:{i}" for t, i in r.waiting_for))

        return parked.release_ready(engine, self.target, send)

    async def _record(self, out: _Outcomes, locked: set[EntityKey]) -> None:
        """Retry/DLQ records acknowledged by the broker, then the state rows and the release of
        the batch's locks (one round trip), then the raw store's status. Only after this may
        the batch's offsets be committed."""
        if out.produce:
            await asyncio.to_thread(self.producer.send_all, out.produce)
        if out.parked:
            await asyncio.to_thread(parked.park, self.state.engine, self.target, out.parked)
        if out.synced or out.failed or locked:
            await asyncio.to_thread(self.state.record_and_unlock, out.synced, out.failed, locked)
        if out.raw_status and self.outbound is not None:
            self.outbound.set_outbound_statuses(out.raw_status)  # queued: see raw_status.py
