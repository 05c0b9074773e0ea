"""The sync-in agent: a thin entry point over every raw.<source> topic. It takes batches of
raw bytes, hands them to the SyncInHandler and acks them only once the handler has stored,
versioned, published and routed every record of the batch.

Acks are manual (`noack_take`): faust acks a message even when the agent body raises, and a
worker stopping mid-batch would otherwise ack what it never finished."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import EventT

from syncflow.agents.outbox import OutboxRelay
from syncflow.agents.sync_in_handler import BatchProgress, SyncInHandler
from syncflow.agents.sync_in_pause import SourceHold, refresh
from syncflow.streams.topics import SyncInTopics
from syncflow.streams.health import HealthCheck
from syncflow.streams.records import KafkaRecord
from syncflow.settings import Settings

log = logging.getLogger(__name__)


def raw_message(event: EventT) -> KafkaRecord:
    """What the handler needs of one faust event (bytes untouched)."""
    msg = event.message
    headers: Any = msg.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    timestamp = msg.timestamp or 0.0
    return KafkaRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=int(timestamp * 1000),
        key=msg.key,
        value=msg.value,
        headers=[(k, v) for k, v in headers if v is not None],
    )


def register_sync_in_agent(
    app: faust.App,
    settings: Settings,
    topics: SyncInTopics,
    handler: SyncInHandler,
    sweeper: OutboxRelay,
    health: HealthCheck | None = None,
    hold: SourceHold | None = None,
) -> None:
    """The agent over the raw topics, the outbox sweeper, the liveness heartbeat and, with a
    hold, the pauses of sources (sync_in_pause.py: paused records held unacknowledged)."""
    channel = app.topic(*topics.raw, key_serializer="raw", value_serializer="raw")
    batch_size, within = settings.sync_in.batch_size, settings.sync_in.batch_timeout_s

    revoked = [False]  # set by a rebalance that takes partitions away while a batch fails

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked_partitions: Any, **_: Any) -> None:
        revoked[0] = True

    def give_up() -> bool:
        return bool(app.should_stop or revoked[0])

    in_batch = [0]  # batches in hand; while one is, only its attempts prove the loop alive

    def alive() -> None:
        if health is not None:
            health.heartbeat()

    finishing: list[asyncio.Task[bool]] = []  # the batch whose raw documents are being written

    async def settle() -> bool:
        """Wait until the batch in its last steps is acked; False when it was let go."""
        return await finishing.pop() if finishing else True

    async def finish(stream: faust.StreamT, events: list[EventT], progress: BatchProgress) -> bool:
        try:
            result = await handler.finish_until_done(progress, give_up, alive)
        finally:
            in_batch[0] -= 1
        if result is None:
            release_unacknowledged(app, events + (hold.let_go() if hold is not None else []))
            return False
        for event in events:
            await stream.ack(event)
        if health is not None:
            health.progress()
        return True

    async def handle(stream: faust.StreamT, events: list[EventT]) -> bool:
        """One batch through the handler: its versions committed and published now, its raw
        documents and DLQ records while the next batch is taken (the raw store is another
        process); acked when all is done, let go when given up. Raw documents are written
        batch after batch, in order, and a batch is let go whenever the one before it was
        (Faust would commit acked offsets past a gap)."""
        messages = [raw_message(e) for e in events]
        in_batch[0] += 1
        alive()
        try:
            progress = await handler.commit_until_done(messages, give_up, alive)
        except BaseException:
            in_batch[0] -= 1
            raise
        before_done = await settle()
        if progress is None or not before_done:
            in_batch[0] -= 1
            release_unacknowledged(app, events + (hold.let_go() if hold is not None else []))
            return False
        finishing.append(asyncio.ensure_future(finish(stream, events, progress)))
        return True

    turn = asyncio.Lock()  # the agent's batches and the pause timer's, one at a time
    agent_stream: list[faust.StreamT] = []

    async def admit(events: list[EventT]) -> list[EventT]:
        if hold is None:
            return events
        await refresh(hold.rules)
        return hold.admit(events)

    # concurrency 1: faust #606 commits past in-flight messages with more; scale by workers.
    @app.agent(channel, name="sync-in", concurrency=1)
    async def sync_in(stream: faust.StreamT) -> None:
        agent_stream[:] = [stream]
        try:
            async for events in stream.noack_take(batch_size, within=within):
                revoked[0] = False
                async with turn:
                    go = await admit(events)
                    done = await handle(stream, go) if go else True
                if not done and app.should_stop:
                    return
                while hold is not None and hold.full and not (app.should_stop or app.rebalancing):
                    await asyncio.sleep(hold.rules.refresh_s)  # too much held: no new batch until a resume
        finally:
            if finishing:  # the last batch's raw documents: acked when written, or let go
                await asyncio.shield(finishing[0])

    if hold is not None:
        @app.timer(interval=max(0.1, hold.rules.refresh_s / 2))
        async def pause_tick() -> None:
            """Lift held records whose pause is over when no batch comes to do it; let every
            held record go when a rebalance or a stop begins (faust waits for them)."""
            if app.rebalancing or app.should_stop:
                if hold.held:
                    release_unacknowledged(app, hold.let_go())
                return
            if not agent_stream or turn.locked():
                return
            async with turn:
                go = await admit([])
                if go:
                    await handle(agent_stream[0], go)

    @app.task
    async def sweep_on_start() -> None:
        await _sweep(sweeper)

    @app.timer(interval=settings.sync_in.outbox_sweep_interval_s)
    async def sweep_outbox() -> None:
        await _sweep(sweeper)
        if not in_batch[0]:  # idle: the timer proves the event loop turns
            alive()


def release_unacknowledged(app: faust.App, events: list[EventT]) -> None:
    """Let go of events without acknowledging them. Faust waits, at a stop or a rebalance,
    until every event it handed out is acked; a batch given up on must neither be acked
    (its offsets would be committed and the records lost) nor hold the worker forever.
    Dropping them from the consumer's unacked set (faust 0.15's bookkeeping) is that."""
    unacked = app.consumer._unacked_messages  # noqa: SLF001 - no public way to release
    for event in events:
        unacked.discard(event.message)


async def _sweep(sweeper: OutboxRelay) -> None:
    try:
        await asyncio.to_thread(sweeper.sweep)
    except Exception as exc:  # noqa: BLE001 - the next sweep tries again; nothing is marked published
        log.warning("outbox sweep failed, will retry: %s: %s", type(exc).__name__, exc)

