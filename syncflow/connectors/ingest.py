"""Push ingest API: a source posts its records to `POST /ingest/{source}/{entity_type}`
(a JSON object or list; Yardi may post XML). Answers 202 with the records' keys only once
the broker has acknowledged every one of them, so nothing answered 202 is ever lost;
anything else gets a clear 4xx/5xx and nothing of that request is produced as accepted.
The request's trace (`X-Trace-Id`, a W3C `traceparent`, or `X-Request-Id`) becomes its
records' `trace-id` header; without one each record gets its own; the answer lists them.

401 bad key · 404 unknown source/entity · 413 body too large, or a record too large for the
raw topic (never fits: do not send it again) · 415 wrong content type · 400 unreadable body
(not JSON, nested deeper than ingest.max_json_depth, XML with a DTD) or records that do not
fit the source's schema (the first ingest.max_errors_listed field errors, the rest counted) ·
503 broker did not acknowledge in time, or more than ingest.max_concurrent_requests requests
at once (Retry-After; retry, duplicates are harmless downstream).

What a request can cost is bounded: the body by max_body_bytes, the answer by
max_errors_listed (values shown short), the process by max_concurrent_requests bodies."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException

from syncflow.connectors.observe import Observer
from syncflow.connectors.publish import RawPublisher, new_batch_number, refused_as_too_large
from syncflow.connectors.schemas import SOURCE_ENTITIES, check_record, load_schema
from syncflow.connectors.xml_records import element_to_record, local_name, parse_xml
from syncflow.errors import (
    ConfigError,
    EncodeError,
    NotAcknowledgedError,
    SchemaRegistryUnavailableError,
    TooLargeError,
    ValidationError,
)
from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.tracing import REQUEST_ID, TRACEPARENT, trace_id_of_traceparent
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings

log = logging.getLogger(__name__)

JSON_TYPES = {"application/json"}
XML_TYPES = {"application/xml", "text/xml"}
XML_SOURCES = {"yardi"}
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
PUBLISHERS_KEY: web.AppKey[dict[str, RawPublisher]] = web.AppKey("publishers")
PRODUCER_KEY: web.AppKey[ReliableProducer] = web.AppKey("producer")
OBSERVER_KEY: web.AppKey[Observer] = web.AppKey("observer")
LIMITER_KEY: web.AppKey["InFlight"] = web.AppKey("in_flight")


@dataclass
class InFlight:
    """Requests being handled now; over the limit a request is answered 503 at once."""

    limit: int
    count: int = 0


@dataclass
class ErrorList:
    """The errors of one answer: the first `limit` kept, the rest only counted, so a body of
    a million bad records costs a small answer and little memory."""

    limit: int
    listed: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, index: int | None, field_name: str | None, reason: str, value: object = None) -> None:
        self.total += 1
        if len(self.listed) < self.limit:
            self.listed.append({"index": index, "field": field_name, "reason": reason, "value": preview(value)})

    def response(self, status: int) -> web.Response:
        return web.json_response({"errors": self.listed, "errors_not_listed": self.total - len(self.listed)},
                                 status=status)


def preview(value: object) -> object:
    """A value as an error shows it: text cut to 200 characters, lists and objects by size."""
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "…"
    if isinstance(value, list | dict):
        return f"<{'list' if isinstance(value, list) else 'object'} of {len(value)} items>"
    return value


def _one_error(status: int, reason: str, field_name: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": [{"index": None, "field": field_name, "reason": reason}]}, status=status,
                             headers=headers)


def json_depth_over(data: Any, limit: int) -> bool:
    """True when lists/objects nest deeper than `limit` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack += [(c, depth + 1) for c in children if isinstance(c, list | dict)]
    return False


def parse_json_records(body: bytes, max_depth: int) -> list[Any]:
    """A JSON object or list of objects, nested at most `max_depth` deep. Raises ValueError
    for anything else."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if not isinstance(data, dict | list):
        raise ValueError("body must be a JSON object or a list of objects")
    if json_depth_over(data, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return [data] if isinstance(data, dict) else data


def parse_xml_records(body: bytes, schema: dict[str, Any], errors: ErrorList) -> list[Any]:
    """One record element, or a container of them; field errors go to `errors`."""
    root = parse_xml(body)
    field_names = {f["name"] for f in schema["fields"]}
    elements = [root] if any(local_name(c.tag) in field_names for c in root) else list(root)
    records: list[Any] = []
    for i, elem in enumerate(elements):
        try:
            records.append(element_to_record(elem, schema))
        except ValidationError as exc:
            records.append(None)
            for e in exc.errors:
                errors.add(i, e.field, e.reason, e.value)
    return records


def field_errors(records: list[Any], schema: dict[str, Any], errors: ErrorList) -> None:
    for i, record in enumerate(records):
        for e in check_record(schema, record):
            errors.add(i, e.field, e.reason, e.value)


def check_api_keys(settings: Settings) -> None:
    """Refuse to start with an empty key: it would let anyone post for that source."""
    empty = sorted(source for source, key in settings.ingest.api_keys.items() if not key.strip())
    if empty:
        raise ConfigError(f"empty ingest API key for {', '.join(empty)}: set ingest.api_keys.<source> "
                          f"(SYNCFLOW_INGEST__API_KEYS__<SOURCE>), or leave the source out to refuse its pushes")


async def ingest(request: web.Request) -> web.Response:
    in_flight = request.app[LIMITER_KEY]
    if in_flight.count >= in_flight.limit:
        retry_after = request.app[SETTINGS_KEY].ingest.retry_after_s
        return _one_error(503, f"more than {in_flight.limit} requests at once; send again in {retry_after} s",
                          headers={"Retry-After": str(retry_after)})
    in_flight.count += 1
    try:
        return await _ingest(request)
    finally:
        in_flight.count -= 1


async def _ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    source, entity_type = request.match_info["source"], request.match_info["entity_type"]
    if source not in SOURCE_ENTITIES or source not in settings.ingest.api_keys:
        return _one_error(404, f"unknown source {source!r}")
    expected = settings.ingest.api_keys[source]
    given = request.headers.get("X-API-Key", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected.encode()):
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
    errors = ErrorList(settings.ingest.max_errors_listed)
    try:
        if request.content_type in XML_TYPES:
            records = parse_xml_records(body, schema, errors)
        else:
            records = parse_json_records(body, settings.ingest.max_json_depth)
    except ValueError as exc:  # UnicodeDecodeError and refused XML (DTD, entities) included
        return _one_error(400, f"unreadable body: {exc}")
    del body
    if not records:
        return _one_error(400, "no records in the body")
    if not errors.total:
        field_errors(records, schema, errors)
    if errors.total:
        return errors.response(400)
    return await _produce(request, source, entity_type, records)


async def _produce(request: web.Request, source: str, entity_type: str, records: list[Any]) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    publisher = request.app[PUBLISHERS_KEY][source]
    batch_number = new_batch_number()
    trace_id = request_trace_id(request)
    bad, too_large = ErrorList(settings.ingest.max_errors_listed), ErrorList(settings.ingest.max_errors_listed)
    prepared: list[tuple[OutgoingRecord, Any]] = []
    for i, record in enumerate(records):
        try:
            prepared.append((publisher.prepare(entity_type, record, batch_number, trace_id), record))
        except TooLargeError as exc:
            too_large.add(i, None, f"{exc}; it can never be accepted, do not send it again")
        except ValidationError as exc:
            for e in exc.errors:
                bad.add(i, e.field, e.reason, e.value)
        except EncodeError as exc:
            bad.add(i, None, str(exc))
        except SchemaRegistryUnavailableError as exc:
            log.error("ingest %s/%s: %s", source, entity_type, exc)
            return _one_error(503, "the schema registry is unavailable; send the records again")
    if bad.total:
        return bad.response(400)
    if too_large.total:
        return too_large.response(413)
    try:
        refused = await asyncio.to_thread(publisher.send_raw, prepared, entity_type)
    except (NotAcknowledgedError, KafkaException) as exc:
        log.error("ingest %s/%s: not acknowledged: %s", source, entity_type, exc)
        if isinstance(exc, NotAcknowledgedError) and refused_as_too_large(exc):
            return _one_error(413, "the broker refused a record as too large; it can never be accepted")
        return _one_error(503, "the records were not acknowledged by the broker; send them again")
    if refused:
        index = {id(out): i for i, (out, _) in enumerate(prepared)}
        for out_id, reject in refused.items():
            too_large.add(index[out_id], None, f"{reject.error}; it can never be accepted, do not send it again")
        return too_large.response(413)
    keys = [out.key.decode() for out, _ in prepared if out.key is not None]
    trace_ids = [header_value(out.headers, TRACE_ID) for out, _ in prepared if out.key is not None]
    request.app[OBSERVER_KEY].published(f"ingest.{source}", publisher.topic, len(keys))
    return web.json_response({"accepted": len(keys), "keys": keys, "trace_ids": trace_ids, "batch_number": batch_number},
                             status=202)


def request_trace_id(request: web.Request) -> str | None:
    """The trace a pushing source names: its `X-Trace-Id`, else the trace id of its W3C
    `traceparent`, else its `X-Request-Id` (None: each record gets a new one)."""
    given = request.headers.get("X-Trace-Id") or trace_id_of_traceparent(request.headers.get(TRACEPARENT)) \
        or request.headers.get(REQUEST_ID)
    given = (given or "").strip()
    return given[:100] if given and given.isprintable() else None


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
