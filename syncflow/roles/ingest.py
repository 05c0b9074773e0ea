"""The composition root of the push ingest API: the producer, one publisher per source and
the observer, built from the settings, around the request handler of
syncflow/connectors/ingest.py; and the server that runs it."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from syncflow.connectors.ingest import (
    LIMITER_KEY,
    OBSERVER_KEY,
    PRODUCER_KEY,
    PUBLISHERS_KEY,
    SETTINGS_KEY,
    InFlight,
    check_api_keys,
    health,
    ingest,
)
from syncflow.connectors.observe import Observer, worker_observer
from syncflow.connectors.publish import RawPublisher
from syncflow.connectors.schemas import SOURCE_ENTITIES
from syncflow.streams.metrics import add_ops_routes
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import Settings

log = logging.getLogger(__name__)


def make_ingest_app(settings: Settings, producer: ReliableProducer | None = None,
                    observer: Observer | None = None) -> web.Application:
    """The ingest application. Without a producer, one is made and closed with the app.
    With an observer that has health checks, /metrics, /health and /ready are served too."""
    check_api_keys(settings)
    own_producer = producer is None
    producer = producer or ReliableProducer(settings)
    # aiohttp refuses bigger bodies itself too (413), without reading them into memory
    app = web.Application(client_max_size=settings.ingest.max_body_bytes)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[PUBLISHERS_KEY] = {s: RawPublisher(settings, s, producer, ack_timeout_s=settings.ingest.ack_timeout_s)
                           for s in SOURCE_ENTITIES}
    app[OBSERVER_KEY] = observer or Observer()
    app[LIMITER_KEY] = InFlight(settings.ingest.max_concurrent_requests)
    app.router.add_post("/ingest/{source}/{entity_type}", ingest)
    if observer is not None and observer.health is not None:
        add_ops_routes(app, observer.health, observer.registry)
    else:
        app.router.add_get("/health", health)
    if own_producer:
        async def close_producer(_app: web.Application) -> None:
            await asyncio.to_thread(producer.close, settings.ingest.ack_timeout_s)

        app.on_cleanup.append(close_producer)
    return app


async def run_ingest(settings: Settings) -> None:
    """Serve the ingest API on settings.ingest.host (else http_host):port until cancelled."""
    runner = web.AppRunner(make_ingest_app(settings, observer=worker_observer(settings)), access_log=None)
    await runner.setup()
    host = settings.ingest.host or settings.http_host
    await web.TCPSite(runner, host, settings.ingest.port).start()
    log.info("ingest API on http://%s:%d", host, settings.ingest.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
