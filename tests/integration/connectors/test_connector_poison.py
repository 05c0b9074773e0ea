"""A connector that meets source records it cannot publish (too large for one raw record,
refused by the broker as too large, not encodable, not a record at all, a garbage modified
time) dead-letters them with their reason and goes on: the valid records around them, on
the same stream and on the others, reach the raw topic, and the cursor moves on."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from syncflow.roles.connector import run_connector
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.dead_letters import PREFIX
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec

from .conftest import latest_by_key, read_topic, saved_cursors

pytestmark = pytest.mark.integration


def work_order(wo_id: str, modified: str, **fields: Any) -> dict[str, Any]:
    return {"workOrderId": wo_id, "propertyCode": "p1", "unitNumber": "101", "residentId": None,
            "category": "PLUMBING", "subCategory": None, "priority": "High", "status": "Open",
            "problemDescription": "Leaking tap", "requesterName": "Ana Kim", "requesterPhone": None,
            "requesterEmail": None, "permissionToEnter": True, "entryNotes": None,
            "createdDate": "2025-11-30T09:00:00", "completedDate": None, "timeZone": "UTC",
            "lastModifiedDate": modified, "isDeleted": False, **fields}


def ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


class RealPageSource:
    """RealPage's REST API over real HTTP, serving exactly the records a test puts in
    `work_orders[property]` (anything, valid or not), filtered by modifiedSince."""

    def __init__(self) -> None:
        self.work_orders: dict[str, list[Any]] = {"p1": [], "p2": []}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/properties", self.properties)
        app.router.add_get("/api/v1/properties/{code}/{collection}", self.collection)
        return app

    async def properties(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"propertyCode": code, "timeZone": "UTC"} for code in self.work_orders]})

    async def collection(self, request: web.Request) -> web.Response:
        records: list[Any] = []
        if request.match_info["collection"] == "workorders":
            since = request.query.get("modifiedSince", "")
            records = [r for r in self.work_orders[request.match_info["code"]]
                       if not isinstance(r, dict) or r["lastModifiedDate"] >= since]
        return web.json_response({"data": records, "page": 1, "pageSize": len(records), "totalCount": len(records),
                                  "links": {"next": None}})


@pytest.fixture
async def realpage() -> AsyncIterator[tuple[RealPageSource, str]]:
    source = RealPageSource()
    server = TestServer(source.app(), host="127.0.0.1")
    await server.start_server()
    yield source, str(server.make_url("")).rstrip("/")
    await server.close()


def dead_letters(settings: Settings) -> dict[str, dict[str, str]]:
    """workOrderId (or the payload, for a record without one) -> failure headers, of every
    record on the connector's dead-letter topic."""
    assert settings.connectors.dlq_topic
    out: dict[str, dict[str, str]] = {}
    for m in read_topic(settings, settings.connectors.dlq_topic):
        headers = {k.removeprefix(PREFIX): v for k, v in m.headers.items() if k.startswith(PREFIX)}
        assert m.value is not None
        out[m.key.split(":", 1)[1] if m.key else m.value.decode()] = {**headers, "payload_bytes": str(len(m.value))}
    return out


async def test_bad_records_are_dead_lettered_and_the_stream_moves_on(realpage, source_settings) -> None:
    source, url = realpage
    good1 = work_order("WO-1", "2025-12-01T10:00:00")
    too_large = work_order("WO-2", "2025-12-01T10:01:00", problemDescription=os.urandom(600_000).hex())
    surrogate = work_order("WO-3", "2025-12-01T10:02:00", problemDescription="broken \ud800 text")
    wrong_type = work_order("WO-4", "2025-12-01T10:03:00", permissionToEnter="sometimes", category="\x00")
    future = work_order("WO-5", "9999-12-31T00:00:00")  # valid, but its time must move no cursor
    good2 = work_order("WO-6", "2025-12-01T11:00:00")
    source.work_orders["p1"] = [good1, too_large, surrogate, "not a record", wrong_type, future, good2]
    source.work_orders["p2"] = [work_order("WO-7", "2025-12-01T09:00:00", propertyCode="p2")]
    settings = source_settings("realpage", url)

    stats = await run_connector(settings, "realpage", once=True)

    assert stats.errors == 0, stats.error_messages
    assert (stats.records_published, stats.records_rejected) == (4, 4)
    raw_topic = settings.connectors.sources["realpage"].topic
    assert set(latest_by_key(settings, read_topic(settings, raw_topic))) == {
        "service_request:WO-1", "service_request:WO-5", "service_request:WO-6", "service_request:WO-7"}
    dead = dead_letters(settings)
    assert set(dead) == {"WO-2", "WO-3", "WO-4", '"not a record"'}
    assert dead["WO-2"]["error.category"] == "too-large"
    assert "over the 1000000-byte limit of one record" in dead["WO-2"]["exception.message"]
    assert int(dead["WO-2"]["payload_bytes"]) <= settings.kafka_max_message_bytes // 2
    assert dead["WO-2"]["payload.truncated"].startswith("1200")
    assert dead["WO-3"]["error.category"] == "encode" and "surrogate" in dead["WO-3"]["exception.message"]
    assert dead["WO-4"]["error.category"] == "validation" and "permissionToEnter" in dead["WO-4"]["exception.message"]
    assert "expected a ServiceRequest record" in dead['"not a record"']["exception.message"]
    cursors = saved_cursors(settings, "realpage")
    assert cursors["p1/service_request"] == str(ms("2025-12-01T11:00:00"))  # past the bad ones, not to 9999

    source.work_orders["p1"].append(work_order("WO-8", "2025-12-02T09:00:00"))
    again = await run_connector(settings, "realpage", once=True)

    assert again.errors == 0 and again.records_published == 1
    assert "service_request:WO-8" in latest_by_key(settings, read_topic(settings, raw_topic))
    assert saved_cursors(settings, "realpage")["p1/service_request"] == str(
        ms("2025-12-02T09:00:00"))


async def test_a_record_the_broker_refuses_as_too_large_is_dead_lettered(realpage, source_settings, stack) -> None:
    source, url = realpage
    small = f"raw.realpage-small-{uuid.uuid4().hex[:8]}"
    create_topics(stack, [TopicSpec(small, 1, 3600_000, config={"max.message.bytes": "20000"})])
    try:
        refused = work_order("WO-2", "2025-12-01T10:01:00", problemDescription=os.urandom(15_000).hex())
        source.work_orders["p1"] = [work_order("WO-1", "2025-12-01T10:00:00"), refused,
                                    work_order("WO-3", "2025-12-01T10:02:00")]
        source.work_orders["p2"] = [work_order("WO-4", "2025-12-01T09:00:00", propertyCode="p2")]
        settings: Settings = source_settings("realpage", url, topic=small)

        stats = await run_connector(settings, "realpage", once=True)

        assert stats.errors == 0, stats.error_messages
        assert (stats.records_published, stats.records_rejected) == (3, 1)
        assert set(latest_by_key(settings, read_topic(settings, small))) == {
            "service_request:WO-1", "service_request:WO-3", "service_request:WO-4"}
        dead = dead_letters(settings)
        assert set(dead) == {"WO-2"} and dead["WO-2"]["error.category"] == "too-large"
        assert "refused by the broker as too large" in dead["WO-2"]["exception.message"]
        assert saved_cursors(settings, "realpage")["p1/service_request"] == str(
            ms("2025-12-01T10:02:00"))
    finally:
        delete_topics(stack, [small])

