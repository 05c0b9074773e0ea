"""The composition root of a source connector: the source's client, the cursor store, the
producer and the publisher, built from the settings, and the connector's loop of passes
(syncflow/connectors/runner.py) with its /metrics, /health and /ready server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from syncflow.connectors.base import SourceClient
from syncflow.connectors.cursor import CursorStore
from syncflow.connectors.insight import InsightClient
from syncflow.connectors.lessen360 import Lessen360SourceClient
from syncflow.connectors.observe import Observer, connector_web_port, start_ops_server, worker_observer
from syncflow.connectors.publish import RawPublisher
from syncflow.connectors.realpage import RealPageClient
from syncflow.connectors.runner import ConnectorStats, run_pass
from syncflow.connectors.yardi import YardiClient
from syncflow.errors import ConfigError
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import Settings, SourceSettings

log = logging.getLogger(__name__)

CLIENTS: dict[str, Any] = {"yardi": YardiClient, "realpage": RealPageClient, "insight": InsightClient,
                           "lessen360": Lessen360SourceClient}


def make_client(source: str, session: aiohttp.ClientSession, settings: Settings,
                observer: Observer | None = None) -> SourceClient:
    if source not in CLIENTS or source not in settings.connectors.sources:
        raise ConfigError(f"unknown source {source!r}; configured: {', '.join(settings.connectors.sources)}")
    src: SourceSettings = settings.connectors.sources[source]
    client: SourceClient = CLIENTS[source](session, src, settings.schemas_dir)
    if observer is not None:
        client.http.on_latency = lambda operation, seconds: observer.source_call(source, operation, seconds)
    return client


async def run_connector(settings: Settings, source: str, *, once: bool = False, max_pages: int | None = None,
                        stop: asyncio.Event | None = None, observer: Observer | None = None) -> ConnectorStats:
    """Pull `source` incrementally onto its raw topic. `once`: one full pass, then return.
    `max_pages`: stop after that many pages (a controlled stop mid-run). `stop`: set it to
    end a continuous run after the current pass. `observer`: metrics and health to feed."""
    src = settings.connectors.sources.get(source)
    if src is None:
        raise ConfigError(f"no settings for source {source!r}")
    stats = ConnectorStats(source)
    await asyncio.to_thread(migrate, settings)  # the cursor table (idempotent, locked)
    engine = make_engine(settings, pool_size=min(src.streams_in_flight, 4))  # cursor writes
    cursors = await asyncio.to_thread(CursorStore, engine, source)
    producer = ReliableProducer(settings)
    publisher = RawPublisher(settings, source, producer, ack_timeout_s=settings.connectors.ack_timeout_s)
    stop = stop or asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            client = make_client(source, session, settings, observer)
            while True:
                pass_started = time.monotonic()
                await run_pass(client, publisher, cursors, stats, max_pages=max_pages, observer=observer,
                               streams_in_flight=src.streams_in_flight)
                stats.passes += 1
                if observer is not None:
                    observer.heartbeat()
                log.info("%s pass %d: %d records, %d unchanged, %d rejected, %d errors", source, stats.passes,
                         stats.records_published, stats.records_unchanged, stats.records_rejected, stats.errors)
                if once or stats.stopped_early or stop.is_set():
                    return stats
                # Passes start every poll_interval_s (the next one at once after a pass that
                # took longer), so a change waits about one interval to be read, not an
                # interval plus however long the pass takes.
                wait_s = max(0.0, src.poll_interval_s - (time.monotonic() - pass_started))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
                    return stats
                except asyncio.TimeoutError:
                    pass
    finally:
        await asyncio.to_thread(producer.close, settings.connectors.ack_timeout_s)
        engine.dispose()


async def run_connector_with_ops(settings: Settings, source: str, once: bool) -> ConnectorStats:
    """The connector plus its /metrics, /health and /ready server (not for --once)."""
    observer = worker_observer(settings)
    ops = None if once else await start_ops_server(observer, settings.http_host,
                                                   connector_web_port(settings, source))
    try:
        return await run_connector(settings, source, once=once, observer=observer)
    finally:
        if ops is not None:
            await ops.cleanup()
