"""The sync-out worker of one target: a plain confluent-kafka consumer (group
sync-out.<target>, manual commits) on the changes topics the target takes and its retry
tiers, feeding a priority buffer that BatchProcessor drains.

The loop: fetch → release due retry partitions → start batches (up to `batches_in_flight`,
each of entities no other batch in flight holds; entities within a batch run concurrently) →
apply the batches that ended → commit the offsets below the oldest unfinished record. While
batches are in flight the consumer is polled on the loop itself, without waiting, so its
rebalance callbacks never run beside the loop's own bookkeeping; a batch that ends after its
partition was revoked only records its outcome (the next owner finds those versions sent)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from syncflow.agents.sync_out.batch import BatchProcessor, Consumed, SyncOutBatchResult
from syncflow.model import ChangeEvent, EntityKey
from syncflow.agents.sync_out.observe import SyncOutObserver
from syncflow.agents.sync_out.offsets import OffsetTracker, TopicPartitionKey
from syncflow.agents.sync_out.pause_hold import PauseHold
from syncflow.agents.sync_out.priority import Entry, PriorityBuffer
from syncflow.agents.sync_out.retry_gate import RetryGate, due_ms
from syncflow.errors import SyncflowError
from syncflow.streams.avro import AvroCodec
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.streams.security import kafka_client_config
from syncflow.settings import Settings
from syncflow.streams.topics import SyncOutTopics

log = logging.getLogger(__name__)

WORKER_KEY = web.AppKey("sync_out_worker", object)


@dataclass(frozen=True)
class InFlight:
    """A batch being processed: its entries and when it started."""

    entries: list[Entry[Consumed]]
    entities: frozenset[str]  # buffer entity names: no other batch may take these meanwhile
    keys: frozenset[EntityKey]
    started: float


def consumer_config(settings: Settings, group: str) -> dict[str, Any]:
    return kafka_client_config(settings, **{
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.sync_out.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.sync_out.session_timeout_ms // 4),
        "partition.assignment.strategy": "roundrobin",
    })


class SyncOutWorker:
    def __init__(
        self,
        settings: Settings,
        target: str,
        topics: SyncOutTopics,
        codec: AvroCodec,
        processor: BatchProcessor,
        observer: SyncOutObserver | None = None,
        hold: PauseHold | None = None,
    ):
        self.settings, self.target, self.topics = settings, target, topics
        self.codec, self.processor = codec, processor
        self.observer = observer or SyncOutObserver(target, topics.group, topics.dlq, settings.sync_out.targets[target].rate_per_minute)
        cfg = settings.sync_out
        self.buffer: PriorityBuffer[Consumed] = PriorityBuffer(aging_s=cfg.priority_aging_s)
        self.offsets = OffsetTracker()
        self.gate = RetryGate()
        self.hold = hold or PauseHold()  # records of paused scopes (syncflow pause)
        self.stats: Counter[str] = Counter()
        self.assigned: set[TopicPartitionKey] = set()
        self._retry_topics = set(topics.retries)
        self._consumer = Consumer({**consumer_config(settings, topics.group), "on_commit": self._on_commit})
        self._stop = asyncio.Event()
        self._not_before = 0.0
        self._next_release = 0.0  # monotonic time of the next release of parked dependants
        self._paused_full = False
        self._batches: dict[asyncio.Task[SyncOutBatchResult], InFlight] = {}
        self._reported_errors: set[str] = set()
        self.web_app = web.Application()
        self.web_app[WORKER_KEY] = self
        self.web_app.add_routes([web.get("/status", self._status)])

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    def stop(self) -> None:
        """Finish the batches in flight, commit, and leave the group."""
        self._stop.set()

    async def run(self) -> None:
        self._consumer.subscribe(self.topics.changes + self.topics.retries, on_assign=self._on_assign, on_revoke=self._on_revoke)
        await self.processor.client.start()
        await asyncio.to_thread(self.processor.limiter.ensure)
        log.info("sync-out %s: group %s on %s", self.target, self.topics.group, ", ".join(self.topics.changes + self.topics.retries))
        try:
            while not self._stop.is_set():
                self.observer.turn()
                await self._fetch()
                self.gate.release_due(self._consumer, time.time())
                self._flow_control()
                await self._serve()
                self._commit(asynchronous=True)
                await self._release_parked()
        finally:
            try:
                while self._batches:
                    await self._finish_batches(None)
                await asyncio.to_thread(self._commit)
            finally:
                await asyncio.to_thread(self._consumer.close)
                await self.processor.client.close()
                await asyncio.to_thread(self.processor.close)
            log.info("sync-out %s stopped: %s", self.target, dict(self.stats))

    # -- Kafka side ---------------------------------------------------------------------------
    async def _fetch(self) -> None:
        now = time.monotonic()
        timeout = self.settings.sync_out.poll_timeout_s
        servable = self._servable()
        if servable >= self.settings.sync_out.batch_size and now >= self._not_before:
            timeout = 0.0
        elif servable and now >= self._not_before:
            timeout = min(timeout, 0.005)  # a moment to fill the batch: fewer, larger batches
        elif servable:
            timeout = min(timeout, self._not_before - now)
        if (due := self.gate.next_due()) is not None:
            timeout = max(0.0, min(timeout, due - time.time()))
        # never more than the window has room for; at least one, since the consumer must be
        # polled while the buffer is full (its partitions are paused then: nothing comes)
        room = max(1, min(self.settings.sync_out.buffer_max - servable, self._buffer_cap() - len(self.buffer)))
        count = min(self.settings.sync_out.batch_size, room)
        if self._batches:  # what the client has fetched already, on the loop: see the module's note
            messages = self._consumer.consume(count, 0)
        else:
            messages = await asyncio.to_thread(self._consumer.consume, count, timeout)
        for msg in messages:
            self._take_in(msg)

    def _take_in(self, msg: Message) -> None:
        if msg.error() is not None:
            text = str(msg.error())
            if msg.error().code() != KafkaError._PARTITION_EOF and text not in self._reported_errors:
                self._reported_errors.add(text)  # once each: a missing topic repeats every poll
                log.warning("sync-out %s: consumer error %s", self.target, text)
            return
        tp = (msg.topic(), msg.partition())
        if self.gate.is_held(tp):
            return  # rewound: read again when due
        failure = read_failure_headers(msg.headers() or []) if msg.topic() in self._retry_topics else {}
        if failure and (due := due_ms(failure)) is not None and due > time.time() * 1000:
            self.gate.hold(self._consumer, msg, due / 1000)
            return
        event: ChangeEvent | None = None
        error: SyncflowError | None = None
        try:
            event = ChangeEvent.from_record(self.codec.decode(msg.value() or b"", topic=msg.topic()).record)
        except SyncflowError as exc:
            error = exc
        except Exception as exc:  # a codec bug must not stop the line either
            error = SyncflowError(f"{type(exc).__name__}: {exc}")
        consumed = Consumed(**Consumed.fields_of(msg), event=event, error=error,
                            attempt=int(failure.get("attempt", 0)) + 1 if failure else 1, failure=failure)
        self.offsets.add(tp, msg.offset())
        entity = f"{event.entity_type}:{event.entity_id}" if event else f"!{msg.topic()}:{msg.partition()}:{msg.offset()}"
        self.buffer.add(entity, event.version if event else 0, event.priority if event else 0, consumed, time.monotonic())
        self.stats["consumed"] += 1

    def _servable(self) -> int:
        """Buffered records not held by a pause."""
        return max(0, len(self.buffer) - self.hold.count)

    def _buffer_cap(self) -> int:
        """The window plus what a pause may hold (held records do not take the window's room)."""
        return self.settings.sync_out.buffer_max + min(self.hold.count, self.hold.hold_max)

    def _flow_control(self) -> None:
        """Pause fetching while the buffer is full (held records aside, up to hold_max);
        the retry gate's pauses stay as they are."""
        limit = self.settings.sync_out.buffer_max
        full = self._servable() >= limit or self.hold.count > self.hold.hold_max
        if not self._paused_full and full and self.assigned:
            self._consumer.pause([TopicPartition(t, p) for t, p in self.assigned])
            self._paused_full = True
        elif self._paused_full and self._servable() < limit // 2 and self.hold.count <= self.hold.hold_max:
            self._consumer.resume([TopicPartition(t, p) for t, p in self.assigned - self.gate.held()])
            self._paused_full = False

    def _commit(self, asynchronous: bool = False) -> None:
        """Commit the finished records' offsets. After each batch asynchronously (the loop does
        not wait for the broker; a failure reported to _on_commit sends them again next time),
        and synchronously, every partition's position, when the worker stops or loses
        partitions."""
        offsets = self.offsets.committable() if asynchronous else self.offsets.positions()
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=asynchronous)
            self.offsets.mark_committed(offsets)
        except KafkaException as exc:  # e.g. during a rebalance: the records come again, idempotently
            log.warning("sync-out %s: commit failed: %s", self.target, exc)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit's result (served by the next poll)."""
        failed = [(p.topic, p.partition) for p in partitions if error is not None or p.error is not None]
        if failed:
            self.offsets.commit_failed(failed)
            log.warning("sync-out %s: commit of %d partitions failed: %s", self.target, len(failed), error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the partitions unpaused: librdkafka keeps a partition's pause across a revoke
        and a re-assignment (a broker restart or a new worker triggers both), while the retry
        gate and the flow control forgot it at the revoke — it would never be fetched again."""
        consumer.assign(partitions)
        consumer.resume(partitions)
        self.assigned = {(p.topic, p.partition) for p in partitions}
        self._paused_full = False
        log.info("sync-out %s: assigned %d partitions", self.target, len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is finished; buffered records of these partitions belong to the next owner."""
        self._commit()
        revoked = {(p.topic, p.partition) for p in partitions}
        self.buffer.drop(lambda c: c.tp in revoked)
        self.offsets.forget(revoked)
        self.gate.forget(revoked)
        self.assigned -= revoked

    async def _release_parked(self) -> None:
        """Every parked_release_interval_s: records parked for a reference that has reached the
        target since go to the dependency lane again (a failure waits for the next time)."""
        now = time.monotonic()
        if now < self._next_release:
            return
        self._next_release = now + self.settings.sync_out.parked_release_interval_s
        try:
            released = await asyncio.to_thread(self.processor.release_parked)
        except Exception as exc:  # noqa: BLE001 - the database or the broker is away: next time
            log.warning("sync-out %s: parked records not released this time: %s: %s", self.target, type(exc).__name__, exc)
            return
        self.stats["released"] += released

    # -- serving the buffer -----------------------------------------------------------------------
    async def _serve(self) -> None:
        """Start batches while there is room and something to serve, then apply those that
        ended: waiting for one while they fill the room (or the next poll is not due yet)."""
        await self.hold.update(self.buffer)
        cfg = self.settings.sync_out
        while len(self._batches) < cfg.batches_in_flight and self._servable() and time.monotonic() >= self._not_before:
            busy = {e for b in self._batches.values() for e in b.entities}
            entries = self.buffer.take(cfg.batch_size, time.monotonic(), self.hold.entities | busy)
            if not entries:
                break
            in_flight = frozenset(k for b in self._batches.values() for k in b.keys)
            task = asyncio.create_task(self.processor.process(entries, in_flight))
            self._batches[task] = InFlight(entries, frozenset(e.entity for e in entries),
                                           frozenset(k for e in entries if (k := e.item.entity_key)), time.perf_counter())
        if not self._batches:
            return
        if len(self._batches) >= cfg.batches_in_flight:
            wait: float | None = None if cfg.batches_in_flight == 1 else cfg.poll_timeout_s
        else:
            wait = 0.005  # room for another batch: poll again soon for records to fill it
        await self._finish_batches(wait)

    async def _finish_batches(self, timeout: float | None) -> None:
        """Wait up to `timeout` (None: until one ends) for a batch in flight to end; apply
        the outcome of each that did."""
        ended, _ = await asyncio.wait(self._batches, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in ended:
            self._apply(task, self._batches.pop(task))

    def _apply(self, task: asyncio.Task[SyncOutBatchResult], batch: InFlight) -> None:
        """Offsets of the finished records, the rest back into the buffer (those of partitions
        still assigned: a revoked partition's records belong to its next owner)."""
        entries = batch.entries
        try:
            result = task.result()
        except Exception:
            log.exception("sync-out %s: batch of %d failed; it will be tried again", self.target, len(entries))
            self.buffer.put_back(e for e in entries if e.item.tp in self.assigned)
            self._not_before = time.monotonic() + 1.0
            self.stats["batch-errors"] += 1
            return
        for entry in result.done:
            self.offsets.done(entry.item.tp, entry.item.offset)
        self.buffer.put_back(e for e in result.put_back if e.item.tp in self.assigned)
        self.stats.update(result.counts)
        self.stats["batches"] += 1
        self.observer.batch(result, time.perf_counter() - batch.started)
        self._not_before = max(self._not_before, result.not_before_s)  # a batch's wait outlasts the others' ends
        if result.put_back and not result.done and not result.not_before_s:
            self._not_before = time.monotonic() + 0.05  # entities busy in another worker

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response({
            "target": self.target,
            "group": self.topics.group,
            "assigned_partitions": len(self.assigned),
            "buffered": len(self.buffer),
            "batches_in_flight": self.batches_in_flight,
            "pending_offsets": self.offsets.pending_count(),
            "held_retry_partitions": len(self.gate.held()),
            "paused_scopes": self.hold.scopes,
            "held_by_pause": self.hold.count,
            "stats": dict(self.stats),
        })
