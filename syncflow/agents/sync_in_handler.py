"""One sync-in batch from consumed bytes to committed, published versions.

Two stages, each one attempt of its steps (synchronous I/O, meant for a worker thread),
remembering in `BatchProgress` which steps are done, so a retry after an outage repeats only
what is left: `commit_versions` (decode and transform; commit the versions; publish their
change events) and `finish` (write the raw documents, each once and with what became of its
record; route the rejected records to the DLQ). `commit_until_done` and `finish_until_done`
retry a stage with backoff until it succeeded, each on a thread of its own, so the agent
commits the next batch while the raw store writes this one; the caller acks the batch only
when its `finish` is done, so an outage delays records and never skips them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from syncflow.agents.outbox import OutboxRelay
from syncflow.agents.sync_in_steps import Accepted, PreparedBatch, Rejected, prepare_batch
from syncflow.streams.topics import SyncInTopics
from syncflow.errors import BadInputError, RecordCrashError, RetryLaterError, ValidationError
from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.refusals import data_refusal
from syncflow.model import NewVersion, RawDocument
from syncflow.sinks.common_db.repository import upsert_versions
from syncflow.sinks.raw_store import Completed, RawFailed, RawRecordStore
from syncflow.streams.avro import AvroCodec, DecodedRecord
from syncflow.streams.dead_letters import FailureContext, carry_headers, dead_letter
from syncflow.streams.logging import trace_context
from syncflow.streams.metrics import SyncflowMetrics
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.records import KafkaRecord

log = logging.getLogger(__name__)


@dataclass
class BatchProgress:
    """What one batch has done so far; survives retries of the same batch."""

    messages: Sequence[KafkaRecord]
    prepared: PreparedBatch | None = None
    new_versions: list[NewVersion] | None = None  # set once committed
    published: bool = False
    raw_written: bool = False
    dead_lettered: bool = False
    attempts: int = 0  # of commit_versions
    finish_attempts: int = 0
    first_failure_ms: int | None = None
    seconds: float = 0.0  # spent in its attempts

    @property
    def committed(self) -> bool:
        """Versions committed and published: what `finish` needs."""
        return self.prepared is not None and self.new_versions is not None and self.published

    @property
    def retries(self) -> int:
        """Attempts after the first, of either stage (a raw document's errorLog counts them)."""
        return max(self.attempts - 1, 0) + max(self.finish_attempts - 1, 0)


@dataclass(frozen=True)
class SyncInBatchResult:
    records: int
    versions: int
    unchanged: int
    rejected: int


@dataclass
class PipelineState:
    """What readiness reports: is the current batch stuck on a store or on Kafka."""

    failing_since: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    batches: int = 0
    last_batch_at: float | None = None

    def ok(self) -> tuple[bool, str]:
        if self.failing_since is None:
            return True, f"{self.batches} batch(es) done"
        age = time.monotonic() - self.failing_since
        return False, f"batch retried {self.consecutive_failures}x for {age:.0f}s: {self.last_error}"


@dataclass
class SyncInHandler:
    topics: SyncInTopics
    group_id: str
    raw_store: RawRecordStore
    engine: Engine
    producer: ReliableProducer
    relay: OutboxRelay
    codec: AvroCodec
    transform: Callable[[str, str, dict[str, Any]], Any]
    content_hash: Callable[[dict[str, Any]], str]
    metrics: SyncflowMetrics | None = None
    retry_backoff_max_s: float = 30.0
    max_message_bytes: int = 1_000_000  # the largest change event or DLQ record Kafka takes
    step_seconds: Any = None  # a prometheus Counter labelled by step, when wired
    state: PipelineState = field(default_factory=PipelineState)

    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict, repr=False)

    # -- one attempt ---------------------------------------------------------------------
    def process(self, progress: BatchProgress) -> SyncInBatchResult:
        """Every step of the batch that is not done yet (synchronous)."""
        self.commit_versions(progress)
        return self.finish(progress)

    def commit_versions(self, progress: BatchProgress) -> None:
        """Decode and transform, commit the versions, publish their change events."""
        if progress.committed:
            return
        started = time.perf_counter()
        step = self._stepper()
        progress.attempts += 1
        try:
            if progress.prepared is None:
                progress.prepared = prepare_batch(
                    progress.messages, self.topics, self._decode, self._transform, self.content_hash,
                    max_event_bytes=self.max_message_bytes,
                )
                step("decode_transform")
            prepared = progress.prepared
            if progress.new_versions is None:
                with unit_of_work(self.engine) as session:
                    versions = self._apply_versions(session, prepared)
                progress.new_versions = versions  # committed
                step("common_db_upsert")
            if not progress.published:
                self.relay.publish_entities((v.entity_type, v.entity_id) for v in progress.new_versions)
                progress.published = True
                step("publish_changes")
        finally:
            progress.seconds += time.perf_counter() - started

    def finish(self, progress: BatchProgress) -> SyncInBatchResult:
        """The raw documents with what became of each record, then the DLQ records; needs
        `commit_versions` done (the raw documents carry the versions it made)."""
        started = time.perf_counter()
        step = self._stepper()
        if not progress.committed or progress.prepared is None or progress.new_versions is None:
            raise RuntimeError("finish() before commit_versions() completed")
        prepared = progress.prepared
        progress.finish_attempts += 1
        try:
            if not progress.raw_written:
                self._write_raw(prepared, progress.new_versions, progress.retries)
                progress.raw_written = True
                step("raw_store_write")
            if not progress.dead_lettered:
                self._route_rejected(progress)
                progress.dead_lettered = True
                step("dead_letters")
        finally:
            progress.seconds += time.perf_counter() - started
        result = SyncInBatchResult(
            records=len(progress.messages),
            versions=len(progress.new_versions),
            unchanged=len(prepared.accepted) - len({v.item_index for v in progress.new_versions}),
            rejected=len(prepared.rejected),
        )
        self._observe(progress, result, progress.seconds)
        return result

    async def handle_until_done(
        self,
        messages: Sequence[KafkaRecord],
        give_up: Callable[[], bool] = lambda: False,
        alive: Callable[[], None] = lambda: None,
    ) -> SyncInBatchResult | None:
        """Every step of a batch, retried with backoff until done (None: given up, see
        `_until_done`)."""
        progress = await self.commit_until_done(messages, give_up, alive)
        if progress is None:
            return None
        return await self.finish_until_done(progress, give_up, alive)

    async def commit_until_done(
        self,
        messages: Sequence[KafkaRecord],
        give_up: Callable[[], bool] = lambda: False,
        alive: Callable[[], None] = lambda: None,
    ) -> BatchProgress | None:
        """`commit_versions` retried until done: the batch's versions are committed and
        published (its raw documents and DLQ records are left to `finish_until_done`)."""
        progress = BatchProgress(messages)
        done = await self._until_done("commit", self.commit_versions, progress, give_up, alive)
        return progress if done else None

    async def finish_until_done(
        self,
        progress: BatchProgress,
        give_up: Callable[[], bool] = lambda: False,
        alive: Callable[[], None] = lambda: None,
    ) -> SyncInBatchResult | None:
        """`finish` retried until done. It runs on a thread of its own, so the agent can
        commit the next batch meanwhile (the raw store is another process)."""
        results: list[SyncInBatchResult] = []
        done = await self._until_done("finish", lambda p: results.append(self.finish(p)), progress, give_up, alive)
        if not done:
            return None
        result = results[-1]
        self.state.failing_since, self.state.last_error, self.state.consecutive_failures = None, None, 0
        self.state.batches += 1
        self.state.last_batch_at = time.monotonic()
        log.info("sync-in batch: %d record(s), %d version(s) applied, %d unchanged, %d dead-lettered (attempt %d)",
                 result.records, result.versions, result.unchanged, result.rejected, progress.retries + 1,
                 extra={"records": result.records, "versions": result.versions, "unchanged": result.unchanged,
                        "dead_lettered": result.rejected, "attempts": progress.retries + 1})
        return result

    async def _until_done(
        self,
        stage: str,
        attempt: Callable[[BatchProgress], object],
        progress: BatchProgress,
        give_up: Callable[[], bool],
        alive: Callable[[], None],
    ) -> bool:
        """Run `attempt` on the stage's own worker thread (one thread per stage, so batches
        stay in order and the event loop keeps heartbeating), retrying with backoff until it
        succeeds. False when `give_up()` turns true while it still fails (the worker is
        stopping, or its partitions moved): the caller leaves the batch unacknowledged for
        the next owner. `alive()` is called whenever an attempt ends and while waiting to
        retry: a loop that stops calling it is hung (an attempt that never returns), not
        merely failing."""
        thread = self._threads.get(stage)
        if thread is None:
            thread = self._threads[stage] = ThreadPoolExecutor(1, thread_name_prefix=f"sync-in-{stage}")
        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            try:
                await loop.run_in_executor(thread, attempt, progress)
            except Exception as exc:  # noqa: BLE001 - anything left is an outage: retry, never skip
                alive()
                if progress.first_failure_ms is None:
                    progress.first_failure_ms = int(time.time() * 1000)
                st = self.state
                st.failing_since = st.failing_since or time.monotonic()
                st.consecutive_failures += 1
                st.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "sync-in batch of %d record(s) failed (attempt %d), retrying in %.1fs: %s",
                    len(progress.messages), progress.retries + 1, delay, st.last_error,
                    exc_info=st.consecutive_failures == 1,
                )
                if self.metrics is not None:
                    self.metrics.retries.labels("sync-in", "batch").inc()
                resume_at = time.monotonic() + delay
                while time.monotonic() < resume_at and not give_up():
                    await asyncio.sleep(min(0.2, delay))
                    alive()
                if give_up():
                    log.warning("sync-in leaves a failing batch of %d record(s) unacknowledged: the worker is "
                                "stopping or its partitions moved; their next owner does it again",
                                len(progress.messages))
                    return False
                delay = min(delay * 2, self.retry_backoff_max_s)
                continue
            return True

    def close(self) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=False)

    def _stepper(self) -> Callable[[str], None]:
        """Adds the time since the previous call to `step_seconds[name]` (where time goes)."""
        last = [time.perf_counter()]

        def step(name: str) -> None:
            now = time.perf_counter()
            if self.step_seconds is not None:
                self.step_seconds.labels(name).inc(now - last[0])
            last[0] = now

        return step

    # -- steps ---------------------------------------------------------------------------
    def _decode(self, data: bytes, topic: str) -> DecodedRecord:
        try:
            return self.codec.decode(data, topic=topic)
        except (BadInputError, RetryLaterError):  # a registry outage retries the batch
            raise
        except Exception as exc:  # noqa: BLE001 - a codec crash on odd bytes is still bad input
            raise RecordCrashError(f"decoding failed: {type(exc).__name__}: {exc}") from exc

    def _transform(self, source: str, entity_type: str, record: dict[str, Any]) -> Any:
        try:
            return self.transform(source, entity_type, record)
        except BadInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a rule that crashes on one record must not stop the line
            raise _crash_as_validation(source, entity_type, exc) from exc

    def _write_raw(self, prepared: PreparedBatch, versions: list[NewVersion], retry_count: int) -> None:
        """Each raw document with what became of its record (completed with the version it
        made, or failed with the errors). A document the server refuses is written again
        without its rawData and with the refusal in its errorLog; its record stays applied
        (or rejected) as it was, and the original bytes stay on the raw topic."""
        made = {v.item_index: v.version_number for v in versions}
        by_index: dict[int, Completed | RawFailed] = {
            a.index: Completed(a.raw_key, a.entity.entity, made.get(a.index)) for a in prepared.accepted
        }
        by_index.update(
            (r.index, RawFailed(r.raw_key, f"{type(r.error).__name__}: {r.error}", _field_errors(r.error), retry_count))
            for r in prepared.rejected if r.raw_key is not None
        )
        docs = list(prepared.raw_docs.values())
        outcomes = [by_index.get(i) for i in prepared.raw_docs]
        result = self.raw_store.upsert_raw_many(docs, outcomes=outcomes)
        if not result.rejected:
            return
        stubs: list[RawDocument] = []
        stub_outcomes: list[Completed | RawFailed | None] = []
        for i, refusal in sorted(result.rejected.items()):
            doc = replace(docs[i], raw_data={})
            stubs += [doc, doc]
            stub_outcomes += [RawFailed(doc.key, f"{type(refusal).__name__}: {refusal}", [], retry_count), outcomes[i]]
            if self.metrics is not None:
                self.metrics.sync_in_failures.labels(doc.key.source_system, doc.key.entity_type, refusal.category).inc()
        log.error("raw store refused %d document(s); stored without rawData: %s",
                  len(result.rejected), "; ".join(str(e) for e in result.rejected.values())[:2000])
        again = self.raw_store.upsert_raw_many(stubs, outcomes=stub_outcomes)
        for i, refusal in again.rejected.items():
            key = stubs[i].key
            log.error("raw store refused %s:%s:%s even without rawData: %s", key.source_system, key.entity_type,
                      key.source_id, refusal, extra={"trace_id": stubs[i].trace_id})

    def _route_rejected(self, progress: BatchProgress) -> None:
        """DLQ records (acknowledged by Kafka); their raw documents are marked failed already."""
        assert progress.prepared is not None
        todo = progress.prepared.rejected
        if not todo:
            return
        self.producer.send_all([self._dead_letter(progress, r) for r in todo])
        for r in todo:
            msg = progress.messages[r.index]
            with trace_context(msg.headers):
                log.warning("sync-in dead-lettered %s (%s:%s:%s): %s: %s", _identity(msg, r), msg.topic, msg.partition,
                            msg.offset, r.error.category, str(r.error)[:500])
        if self.metrics is not None:
            for r in todo:
                source, entity_type = self._labels(progress.messages[r.index], r)
                self.metrics.sync_in_failures.labels(source, entity_type, r.error.category).inc()
                self.metrics.dlq_records.labels(self.topics.dlq, r.error.category).inc()

    def _dead_letter(self, progress: BatchProgress, rejected: Rejected) -> OutgoingRecord:
        msg = progress.messages[rejected.index]
        error = rejected.error
        ctx = FailureContext(
            original_topic=msg.topic,
            original_partition=msg.partition,
            original_offset=msg.offset,
            original_timestamp_ms=msg.timestamp_ms,
            consumer_group=self.group_id,
            error=error,
            attempt=1,
            first_failure_ms=progress.first_failure_ms,
            rule=error.rule if isinstance(error, ValidationError) else None,
        )
        return dead_letter(self.topics.dlq, msg.key, msg.value, carry_headers(msg.headers), ctx, self.max_message_bytes)

    def _apply_versions(self, session: Session, prepared: PreparedBatch) -> list[NewVersion]:
        """All accepted records at once; when the database refuses the batch for its data
        (SQLSTATE class 22/23, not an outage: `data_refusal`), each record alone in a
        savepoint, so one refused record goes to the DLQ and the rest are kept. Anything
        else escapes and the batch is retried. Each version's `item_index` is the message
        index of the record that made it."""
        accepted = prepared.accepted
        try:
            with session.begin_nested():
                made = upsert_versions(session, [a.entity for a in accepted])
                return [_reindexed(v, accepted[v.item_index].index) for v in made]
        except Exception as exc:
            if data_refusal(exc) is None:
                raise
            log.warning("database refused a batch (%s); applying its %d record(s) one by one",
                        str(exc).strip()[:500], len(accepted))
        created: list[NewVersion] = []
        kept: list[Accepted] = []
        for item in accepted:
            try:
                with session.begin_nested():
                    made = upsert_versions(session, [item.entity])
            except Exception as exc:
                refusal = data_refusal(exc)
                if refusal is None:
                    raise
                log.warning("database refused %s:%s:%s: %s", item.raw_key.source_system, item.raw_key.entity_type,
                            item.raw_key.source_id, refusal, extra={"trace_id": item.entity.trace_id})
                prepared.rejected.append(Rejected(item.index, refusal, item.raw_key))
                continue
            kept.append(item)
            created += [_reindexed(v, item.index) for v in made]
        prepared.accepted = kept
        return created

    def _labels(self, msg: KafkaRecord, rejected: Rejected | None = None) -> tuple[str, str]:
        if rejected is not None and rejected.raw_key is not None:
            return rejected.raw_key.source_system, rejected.raw_key.entity_type
        source = self.topics.raw.get(msg.topic, "unknown")
        entity_type = (msg.key or b"unknown").split(b":", 1)[0].decode(errors="replace")[:50]
        return source, entity_type

    def _observe(self, progress: BatchProgress, result: SyncInBatchResult, seconds: float) -> None:
        if self.metrics is None or progress.prepared is None:
            return
        m = self.metrics
        counts = Counter(self._labels(msg) for msg in progress.messages)
        for (source, entity_type), n in counts.items():
            m.sync_in_requests.labels(source, entity_type).inc(n)
            m.sync_in_processing_seconds.labels(source, entity_type).observe(seconds / max(result.records, 1))
        for a in progress.prepared.accepted:
            m.sync_in_success.labels(a.raw_key.source_system, a.raw_key.entity_type).inc()
        for topic, n in Counter(msg.topic for msg in progress.messages).items():
            m.record_processed(self.group_id, topic, n)


def _identity(msg: KafkaRecord, rejected: Rejected) -> str:
    """`<source>:<entity_type>:<source_id>` of a rejected record, else its raw key as it came."""
    if rejected.raw_key is not None:
        k = rejected.raw_key
        return f"{k.source_system}:{k.entity_type}:{k.source_id}"
    return "key " + repr((msg.key or b"")[:200].decode(errors="replace"))


def _field_errors(error: BadInputError) -> list[Any]:
    return list(error.errors) if isinstance(error, ValidationError) else []


def _crash_as_validation(source: str, entity_type: str, exc: Exception) -> RecordCrashError:
    return RecordCrashError(f"rules for {source}.{entity_type} crashed: {type(exc).__name__}: {exc}"[:2000])


def _reindexed(version: NewVersion, item_index: int) -> NewVersion:
    return replace(version, item_index=item_index)
