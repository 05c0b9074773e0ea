"""Push ingest API: a source posts its records to `POST /ingest/{source}/{entity_type}`
(a JSON object or list; Yardi may post XML). Answers 202 with the records' keys only once
the broker has acknowledged every one of them, so nothing answered 202 is ever lost;
anything else gets a clear 4xx/5xx and nothing of that request is produced as accepted.

401 bad key · 404 unknown source/entity · 413 body too large · 415 wrong content type ·
400 unreadable body or records that do not fit the source's schema (field-level errors) ·
503 broker did not acknowledge in time (retry; duplicates are harmless downstream)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException

from syncflow.connectors.observe import Observer, worker_observer
from syncflow.connectors.publish import RawPublisher, new_batch_number
from syncflow.connectors.schemas import SOURCE_ENTITIES, check_record, load_schema
from syncflow.connectors.xml_records import element_to_record, local_name
from syncflow.errors import EncodeError, SchemaRegistryUnavailableError, ValidationError
from syncflow.streams.metrics import add_ops_routes
from syncflow.streams.producer import DeliveryError, ReliableProducer
from syncflow.streams.settings import Settings

log = logging.getLogger(__name__)

JSON_TYPES = {"application/json"}
XML_TYPES = {"application/xml", "text/xml"}
XML_SOURCES = {"yardi"}
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
PUBLISHERS_KEY: web.AppKey[dict[str, RawPublisher]] = web.AppKey("publishers")
PRODUCER_KEY: web.AppKey[ReliableProducer] = web.AppKey("producer")
OBSERVER_KEY: web.AppKey[Observer] = web.AppKey("observer")


def _errors(status: int, errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"errors": errors}, status=status)


def _one_error(status: int, reason: str, field: str | None = None) -> web.Response:
    return _errors(status, [{"index": None, "field": field, "reason": reason}])


def parse_json_records(body: bytes) -> list[Any]:
    """A JSON object or list of objects. Raises ValueError for anything else."""
    data = json.loads(body)
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise ValueError("body must be a JSON object or a list of objects")


def parse_xml_records(body: bytes, schema: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """One record element, or a container of them. Returns (records, field errors)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"body is not well-formed XML: {exc}") from exc
    field_names = {f["name"] for f in schema["fields"]}
    elements = [root] if any(local_name(c.tag) in field_names for c in root) else list(root)
    records: list[Any] = []
    errors: list[dict[str, Any]] = []
    for i, elem in enumerate(elements):
        try:
            records.append(element_to_record(elem, schema))
        except ValidationError as exc:
            records.append(None)
            errors += [{"index": i, "field": e.field, "reason": e.reason, "value": e.to_dict()["value"]}
                       for e in exc.errors]
    return records, errors


def field_errors(records: list[Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        out += [{"index": i, "field": e.field, "reason": e.reason, "value": e.to_dict()["value"]}
                for e in check_record(schema, record)]
    return out


async def ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    source, entity_type = request.match_info["source"], request.match_info["entity_type"]
    if source not in SOURCE_ENTITIES or source not in settings.ingest.api_keys:
        return _one_error(404, f"unknown source {source!r}")
    expected = settings.ingest.api_keys[source]
    if not hmac.compare_digest(request.headers.get("X-API-Key", "").encode(), expected.encode()):
        return _one_error(401, "missing or invalid X-API-Key")
    if entity_type not in SOURCE_ENTITIES[source]:
        return _one_error(404, f"{source} provides no {entity_type!r} records; "
                               f"it provides {', '.join(SOURCE_ENTITIES[source])}")
    if request.content_length is not None and request.content_length > settings.ingest.max_body_bytes:
        return _one_error(413, f"body larger than {settings.ingest.max_body_bytes} bytes")
    allowed = JSON_TYPES | (XML_TYPES if source in XML_SOURCES else set())
    if request.content_type not in allowed:
        return _one_error(415, f"content type {request.content_type!r} not accepted; use {', '.join(sorted(allowed))}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _one_error(413, f"body larger than {settings.ingest.max_body_bytes} bytes")
    schema = load_schema(settings.schemas_dir, source, entity_type)
    try:
        if request.content_type in XML_TYPES:
            records, errors = parse_xml_records(body, schema)
        else:
            records = parse_json_records(body)
            errors = []
    except (ValueError, UnicodeDecodeError) as exc:
        return _one_error(400, f"unreadable body: {exc}")
    if not records:
        return _one_error(400, "no records in the body")
    errors = errors or field_errors(records, schema)
    if errors:
        return _errors(400, errors)
    return await _produce(request, source, entity_type, records)


async def _produce(request: web.Request, source: str, entity_type: str, records: list[Any]) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    publisher = request.app[PUBLISHERS_KEY][source]
    batch_number = new_batch_number()
    try:
        outgoing = [publisher.prepare(entity_type, r, batch_number) for r in records]
    except (ValidationError, EncodeError) as exc:
        return _one_error(400, str(exc))
    except SchemaRegistryUnavailableError as exc:
        log.error("ingest %s/%s: %s", source, entity_type, exc)
        return _one_error(503, "the schema registry is unavailable; send the records again")
    try:
        await asyncio.to_thread(request.app[PRODUCER_KEY].send_all, outgoing, settings.ingest.ack_timeout_s)
    except (DeliveryError, KafkaException) as exc:
        log.error("ingest %s/%s: not acknowledged: %s", source, entity_type, exc)
        return _one_error(503, "the records were not acknowledged by the broker; send them again")
    keys = [o.key.decode() for o in outgoing if o.key is not None]
    request.app[OBSERVER_KEY].published(f"ingest.{source}", publisher.topic, len(keys))
    return web.json_response({"accepted": len(keys), "keys": keys, "batch_number": batch_number}, status=202)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_ingest_app(settings: Settings, producer: ReliableProducer | None = None,
                    observer: Observer | None = None) -> web.Application:
    """The ingest application. Without a producer, one is made and closed with the app.
    With an observer that has health checks, /metrics, /health and /ready are served too."""
    own_producer = producer is None
    producer = producer or ReliableProducer(settings)
    # aiohttp refuses bigger bodies itself too (413), without reading them into memory
    app = web.Application(client_max_size=settings.ingest.max_body_bytes)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[PUBLISHERS_KEY] = {s: RawPublisher(settings, s, producer, ack_timeout_s=settings.ingest.ack_timeout_s)
                           for s in SOURCE_ENTITIES}
    app[OBSERVER_KEY] = observer or Observer()
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
    """Serve the ingest API on settings.ingest.host:port until cancelled."""
    runner = web.AppRunner(make_ingest_app(settings, observer=worker_observer(settings)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.ingest.host, settings.ingest.port).start()
    log.info("ingest API on http://%s:%d", settings.ingest.host, settings.ingest.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
