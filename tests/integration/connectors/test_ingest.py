"""The push ingest API over real HTTP and the real broker: every answer, and 202 only for
records the broker holds."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from syncflow.roles.ingest import make_ingest_app
from syncflow.connectors.schemas import load_schema, with_defaults
from syncflow.connectors.xml_records import record_to_element
from syncflow.emulators.sources import generate_world
from syncflow.emulators.sources.render import render
from syncflow.errors import ConfigError
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec

from .conftest import latest_by_key, read_topic

pytestmark = pytest.mark.integration

WORLD = generate_world(seed=5, volume=16)


def records_of(source: str, entity_type: str, n: int = 3) -> list[dict[str, Any]]:
    return [render(e) for e in WORLD.of(source, entity_type)[:n]]


@pytest.fixture
def ingest_settings(stack: Settings, topic_factory: Callable[..., str]) -> Settings:
    sources = {s: src.model_copy(update={"topic": topic_factory(f"raw.{s}", 2)})
               for s, src in stack.connectors.sources.items()}
    return stack.model_copy(update={
        "connectors": stack.connectors.model_copy(update={"sources": sources}),
        "ingest": stack.ingest.model_copy(update={"max_body_bytes": 64 * 1024, "ack_timeout_s": 10.0}),
    })


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Settings], Any]]:
    servers: list[TestServer] = []

    async def start(settings: Settings) -> str:
        server = TestServer(make_ingest_app(settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


async def post(url: str, body: bytes | str, content_type: str = "application/json",
               key: str | None = "realpage-key") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["X-API-Key"] = key
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def topic_of(settings: Settings, source: str) -> str:
    topic = settings.connectors.sources[source].topic
    assert topic
    return topic


async def test_202_only_with_keys_of_records_the_broker_holds(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    records = records_of("realpage", "service_request")
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps(records))
    assert status == 202, body
    expected_keys = [f"service_request:{r['workOrderId']}" for r in records]
    assert body["keys"] == expected_keys and body["accepted"] == 3
    on_topic = latest_by_key(ingest_settings, read_topic(ingest_settings, topic_of(ingest_settings, "realpage")))
    assert on_topic == dict(zip(expected_keys, records, strict=True))


@pytest.mark.parametrize("header", ["X-Trace-Id", "traceparent", "X-Request-Id"])
async def test_the_pushing_sources_trace_id_is_every_records_trace_id(ingest_settings, serve, header) -> None:
    base = await serve(ingest_settings)
    trace_id = uuid.uuid4().hex
    value = f"00-{trace_id}-00f067aa0ba902b7-01" if header == "traceparent" else trace_id
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}/ingest/realpage/service_request", data=json.dumps(records_of("realpage", "service_request")),
            headers={"Content-Type": "application/json", "X-API-Key": "realpage-key", header: value}) as resp:
        assert resp.status == 202
        body = await resp.json()
    assert body["trace_ids"] == [trace_id] * 3
    on_topic = read_topic(ingest_settings, topic_of(ingest_settings, "realpage"))
    assert sorted(m.headers["trace-id"] for m in on_topic) == [trace_id] * 3


async def test_without_a_trace_id_each_record_gets_its_own(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps(records_of("realpage", "service_request")))
    assert status == 202 and len(set(body["trace_ids"])) == 3
    on_topic = read_topic(ingest_settings, topic_of(ingest_settings, "realpage"))
    assert {m.key: m.headers["trace-id"] for m in on_topic} == dict(zip(body["keys"], body["trace_ids"], strict=True))


async def test_single_object_with_omitted_optional_fields_gets_its_defaults(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    record = {"workOrderId": "WO-9", "propertyCode": "ceda02", "updatedAtMs": 1767225600000}
    status, body = await post(f"{base}/ingest/lessen360/service_request", json.dumps(record), key="lessen360-key")
    assert status == 202, body
    on_topic = latest_by_key(ingest_settings, read_topic(ingest_settings, topic_of(ingest_settings, "lessen360")))
    schema = load_schema(ingest_settings.schemas_dir, "lessen360", "service_request")
    assert on_topic == {"service_request:WO-9": with_defaults(schema, record)}
    assert on_topic["service_request:WO-9"]["archived"] is False


async def test_yardi_posts_xml(ingest_settings, serve) -> None:
    import xml.etree.ElementTree as ET

    base = await serve(ingest_settings)
    schema = load_schema(ingest_settings.schemas_dir, "yardi", "service_request")
    records = records_of("yardi", "service_request", 2)
    container = ET.Element("ServiceRequests")
    for r in records:
        container.append(record_to_element("ServiceRequest", r, schema))
    status, body = await post(f"{base}/ingest/yardi/service_request", ET.tostring(container), "application/xml",
                              key="yardi-key")
    assert status == 202, body
    on_topic = latest_by_key(ingest_settings, read_topic(ingest_settings, topic_of(ingest_settings, "yardi")))
    assert on_topic == {f"service_request:{r['ServiceRequestId']}": r for r in records}


async def test_field_errors_are_listed_and_nothing_is_produced(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    good, bad = records_of("realpage", "service_request", 2)
    bad = dict(bad, permissionToEnter="yes", colour="red")
    del bad["workOrderId"]
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps([good, bad]))
    assert status == 400
    got = {(e["index"], e["field"]) for e in body["errors"]}
    assert got == {(1, "workOrderId"), (1, "permissionToEnter"), (1, "colour")}
    assert all(e["reason"] for e in body["errors"])
    assert read_topic(ingest_settings, topic_of(ingest_settings, "realpage")) == []


async def test_xml_field_errors(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    xml = b"<ServiceRequest><ServiceRequestId>1</ServiceRequestId><HasPermissionToEnter>maybe</HasPermissionToEnter></ServiceRequest>"
    status, body = await post(f"{base}/ingest/yardi/service_request", xml, "text/xml", key="yardi-key")
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"PropertyCode", "UpdateDate", "HasPermissionToEnter"}


@pytest.mark.parametrize("key", [None, "wrong", "yardi-key"])
async def test_401_for_a_missing_or_wrong_key(ingest_settings, serve, key) -> None:
    base = await serve(ingest_settings)
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps(records_of("realpage", "service_request")), key=key)
    assert status == 401 and "X-API-Key" in body["errors"][0]["reason"]


async def test_404_for_unknown_source_or_entity(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    assert (await post(f"{base}/ingest/acme/service_request", "{}"))[0] == 404
    status, body = await post(f"{base}/ingest/lessen360/resident", "{}", key="lessen360-key")
    assert status == 404 and "service_request" in body["errors"][0]["reason"]


async def test_413_for_a_body_over_the_limit(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    records = records_of("realpage", "service_request", 1) * 200
    body = json.dumps(records)
    assert len(body) > ingest_settings.ingest.max_body_bytes
    assert (await post(f"{base}/ingest/realpage/service_request", body))[0] == 413


@pytest.mark.parametrize("source,content_type", [("realpage", "text/plain"), ("realpage", "application/xml"),
                                                 ("yardi", "text/csv")])
async def test_415_for_a_content_type_the_source_may_not_send(ingest_settings, serve, source, content_type) -> None:
    base = await serve(ingest_settings)
    status, _ = await post(f"{base}/ingest/{source}/service_request", "x", content_type, key=f"{source}-key")
    assert status == 415


@pytest.mark.parametrize("body", ["{not json", "42", "[]"])
async def test_400_for_an_unreadable_or_empty_body(ingest_settings, serve, body) -> None:
    base = await serve(ingest_settings)
    status, answer = await post(f"{base}/ingest/realpage/service_request", body)
    assert status == 400 and answer["errors"][0]["reason"]


async def test_503_not_202_when_the_broker_does_not_acknowledge(ingest_settings, serve) -> None:
    unreachable = ingest_settings.model_copy(update={
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "ingest": ingest_settings.ingest.model_copy(update={"ack_timeout_s": 1.0})})
    base = await serve(unreachable)
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps(records_of("realpage", "service_request")))
    assert status == 503 and "again" in body["errors"][0]["reason"]


async def test_lessen360_webhook_push_lands_on_the_raw_topic(ingest_settings, serve, world_emulator) -> None:
    base = await serve(ingest_settings)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{world_emulator.url}/_emulator/webhook",
                                json={"url": f"{base}/ingest/lessen360", "api_key": "lessen360-key", "count": 12}) as r:
            pushed = (await r.json())["pushed"]
        async with session.get(f"{world_emulator.url}/_emulator/records") as r:
            truth = {f"{x['entity_type']}:{x['source_id']}": x["record"] for x in (await r.json())["records"]}
    assert pushed and all(p["status"] == 202 for p in pushed)
    on_topic = latest_by_key(ingest_settings, read_topic(ingest_settings, topic_of(ingest_settings, "lessen360")))
    assert len(on_topic) == len({k for p in pushed for k in p["body"]["keys"]}) > 0
    assert all(on_topic[k] == truth[k] for k in on_topic)


@pytest.fixture
async def world_emulator(start_emulator):
    return await start_emulator("lessen360")


async def test_ingest_serves_metrics_and_readiness(ingest_settings) -> None:
    from syncflow.connectors.observe import worker_observer

    observer = worker_observer(ingest_settings)
    server = TestServer(make_ingest_app(ingest_settings, observer=observer), host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        status, _ = await post(f"{base}/ingest/realpage/service_request", json.dumps(records_of("realpage", "service_request")))
        assert status == 202
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/ready") as resp:
                assert resp.status == 200
            async with session.get(f"{base}/metrics") as resp:
                text = await resp.text()
        topic = topic_of(ingest_settings, "realpage")
        assert f'syncflow_records_processed_total{{group="ingest.realpage",topic="{topic}"}} 3.0' in text
    finally:
        await server.close()


# -- input nobody designed for: refused with a readable reason, the next valid post still flows


async def accepted_after(base: str, settings: Settings) -> None:
    """A valid post right after the bad one is answered 202 and lands on the raw topic."""
    record = records_of("realpage", "service_request", 1)[0]
    status, body = await post(f"{base}/ingest/realpage/service_request", json.dumps(record))
    assert status == 202, body
    on_topic = latest_by_key(settings, read_topic(settings, topic_of(settings, "realpage")))
    assert on_topic[f"service_request:{record['workOrderId']}"] == record


async def test_200000_empty_objects_get_a_small_bounded_answer(ingest_settings, serve) -> None:
    settings = ingest_settings.model_copy(update={
        "ingest": ingest_settings.ingest.model_copy(update={"max_body_bytes": 1024 * 1024})})
    base = await serve(settings)
    body = b"[" + b",".join([b"{}"] * 200_000) + b"]"
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}/ingest/realpage/service_request", data=body,
            headers={"Content-Type": "application/json", "X-API-Key": "realpage-key"}) as resp:
        status, raw = resp.status, await resp.read()
    assert status == 400
    assert len(raw) < 32 * 1024, f"a {len(raw)}-byte answer"
    answer = json.loads(raw)
    assert len(answer["errors"]) == settings.ingest.max_errors_listed == 100
    assert answer["errors"][0] == {"index": 0, "field": "workOrderId", "reason": "is required", "value": None}
    assert answer["errors_not_listed"] > 200_000
    await accepted_after(base, settings)


DEEP_FIELD = json.dumps({"workOrderId": "WO-deep", "category": json.loads("[" * 40 + "]" * 40)}).encode()


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, DEEP_FIELD], ids=["5000-brackets", "40-deep-field"])
async def test_nesting_deeper_than_the_limit_is_a_400(ingest_settings, serve, body) -> None:
    base = await serve(ingest_settings)
    status, answer = await post(f"{base}/ingest/realpage/service_request", body)
    assert status == 400, answer
    assert "nested deeper than 32 levels" in answer["errors"][0]["reason"]
    await accepted_after(base, ingest_settings)


async def test_values_in_errors_are_shown_short(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    record = dict(records_of("realpage", "service_request", 1)[0], category=["x"] * 5000,
                  permissionToEnter="p" * 20_000)
    status, answer = await post(f"{base}/ingest/realpage/service_request", json.dumps(record))
    assert status == 400
    values = {e["field"]: e["value"] for e in answer["errors"]}
    assert values == {"category": "<list of 5000 items>", "permissionToEnter": "p" * 200 + "…"}


async def test_lone_surrogate_is_a_400_naming_the_record(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    good, bad = records_of("realpage", "service_request", 2)
    body = json.dumps([good, dict(bad, problemDescription="broken \ud800 text")])
    status, answer = await post(f"{base}/ingest/realpage/service_request", body)
    assert status == 400, answer
    assert answer["errors"][0]["index"] == 1 and "surrogate" in answer["errors"][0]["reason"]
    assert read_topic(ingest_settings, topic_of(ingest_settings, "realpage")) == []
    await accepted_after(base, ingest_settings)


async def test_a_record_that_can_never_fit_the_raw_topic_is_a_413(ingest_settings, serve) -> None:
    settings = ingest_settings.model_copy(update={"kafka_max_message_bytes": 20_000})
    base = await serve(settings)
    good, big = records_of("realpage", "service_request", 2)
    big = dict(big, problemDescription="x" * 30_000)
    status, answer = await post(f"{base}/ingest/realpage/service_request", json.dumps([good, big]))
    assert status == 413, answer
    [error] = answer["errors"]
    assert error["index"] == 1 and "20000-byte limit" in error["reason"] and "do not send it again" in error["reason"]
    await accepted_after(base, settings)


async def test_a_record_the_broker_refuses_as_too_large_is_a_413_not_a_503(ingest_settings, serve, stack) -> None:
    small = f"raw.realpage-small-{uuid.uuid4().hex[:8]}"
    create_topics(stack, [TopicSpec(small, 1, 3600_000, config={"max.message.bytes": "20000"})])
    try:
        sources = dict(ingest_settings.connectors.sources)
        sources["realpage"] = sources["realpage"].model_copy(update={"topic": small})
        settings = ingest_settings.model_copy(update={
            "connectors": ingest_settings.connectors.model_copy(update={"sources": sources})})
        base = await serve(settings)
        good, big = records_of("realpage", "service_request", 2)
        big = dict(big, problemDescription=os.urandom(15_000).hex())  # 30 KB that do not compress
        status, answer = await post(f"{base}/ingest/realpage/service_request", json.dumps([good, big]))
        assert status == 413, answer
        [error] = answer["errors"]
        assert error["index"] == 1 and "refused by the broker as too large" in error["reason"]
        await accepted_after(base, settings)
    finally:
        delete_topics(stack, [small])


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ServiceRequest><ServiceRequestId>&lol4;</ServiceRequestId></ServiceRequest>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ServiceRequest><ServiceRequestId>&xxe;</ServiceRequestId></ServiceRequest>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY])
async def test_xml_with_a_dtd_is_refused_never_expanded(ingest_settings, serve, document) -> None:
    base = await serve(ingest_settings)
    status, answer = await post(f"{base}/ingest/yardi/service_request", document, "application/xml", key="yardi-key")
    assert status == 400, answer
    assert "DTD or entity declarations is not accepted" in answer["errors"][0]["reason"]
    assert "lollol" not in json.dumps(answer) and "root:" not in json.dumps(answer)
    schema = load_schema(ingest_settings.schemas_dir, "yardi", "service_request")
    import xml.etree.ElementTree as ET

    record = records_of("yardi", "service_request", 1)[0]
    status, body = await post(f"{base}/ingest/yardi/service_request",
                              ET.tostring(record_to_element("ServiceRequest", record, schema)), "text/xml", key="yardi-key")
    assert status == 202, body


async def test_wrong_content_type_then_a_valid_post(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    status, answer = await post(f"{base}/ingest/realpage/service_request", b"\x00\xff\xfe binary", "application/octet-stream")
    assert status == 415 and "application/json" in answer["errors"][0]["reason"]
    status, answer = await post(f"{base}/ingest/realpage/service_request", b"\xff\xfe not utf-8")
    assert status == 400 and "unreadable body" in answer["errors"][0]["reason"]
    await accepted_after(base, ingest_settings)


async def test_requests_over_the_concurrency_limit_get_503_with_retry_after(ingest_settings, serve) -> None:
    settings = ingest_settings.model_copy(update={
        "ingest": ingest_settings.ingest.model_copy(update={"max_concurrent_requests": 1, "retry_after_s": 3})})
    base = await serve(settings)
    url = f"{base}/ingest/realpage/service_request"
    record = json.dumps(records_of("realpage", "service_request", 1)).encode()
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield record[:10]
        await release.wait()  # the first request holds its slot while its body is still coming
        yield record[10:]

    headers = {"Content-Type": "application/json", "X-API-Key": "realpage-key"}
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(session.post(url, data=slow_body(), headers=headers))
        await asyncio.sleep(0.5)
        async with session.post(url, data=record, headers=headers) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "3"
            assert "more than 1 requests at once" in (await resp.json())["errors"][0]["reason"]
        release.set()
        async with await first as resp:
            assert resp.status == 202, await resp.text()
    await accepted_after(base, settings)


async def test_an_api_key_that_is_not_utf8_is_a_401(ingest_settings, serve) -> None:
    base = await serve(ingest_settings)
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /ingest/realpage/service_request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"X-API-Key: \xff\xfekey\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401", status_line
    await accepted_after(base, ingest_settings)


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused_at_start_up(ingest_settings, key) -> None:
    settings = ingest_settings.model_copy(update={"ingest": ingest_settings.ingest.model_copy(update={
        "api_keys": {**ingest_settings.ingest.api_keys, "insight": key}})})
    with pytest.raises(ConfigError, match=r"empty ingest API key for insight.*SYNCFLOW_INGEST__API_KEYS__"):
        make_ingest_app(settings)
