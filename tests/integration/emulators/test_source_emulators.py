"""The source emulators over real HTTP: each API's paging, filters, errors, and the
/_emulator/ control API (changes, faults, ground truth)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from syncflow.connectors.yardi import parse_result, soap_request
from syncflow.emulators.sources import RunningEmulator, World, generate_world, start_source_emulator
from syncflow.emulators.sources.insight import encode_cursor

pytestmark = pytest.mark.integration

AUTH = {"UserName": "syncflow", "Password": "local-key", "ServerName": "voyager", "Database": "live"}


@pytest.fixture
def world() -> World:
    return generate_world(seed=21, volume=48, invalid_rate=0.05)


@pytest.fixture
async def start(world: World) -> AsyncIterator[Callable[..., Any]]:
    started: list[RunningEmulator] = []

    async def go(source: str) -> RunningEmulator:
        em = await start_source_emulator(source, "127.0.0.1", 0, world)
        started.append(em)
        return em

    yield go
    for em in started:
        await em.close()


async def fetch(method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.read()


async def yardi_call(em: RunningEmulator, operation: str, **params: str) -> tuple[int, bytes]:
    return await fetch("POST", f"{em.url}/Voyager/ItfServiceRequests.asmx", data=soap_request(operation, {**AUTH, **params}),
                       headers={"Content-Type": "text/xml"})


async def truth(em: RunningEmulator) -> list[dict[str, Any]]:
    status, body = await fetch("GET", f"{em.url}/_emulator/records")
    assert status == 200
    import json

    return json.loads(body)["records"]


async def test_yardi_whole_property_from_date_and_in_band_errors(start, world: World) -> None:
    em = await start("yardi")
    code = world.properties("yardi")[0].data["property_code"]
    status, body = await yardi_call(em, "GetServiceRequest_Search", YardiPropertyId=code)
    assert status == 200
    all_ids = [e.findtext("ServiceRequestId") for e in parse_result("GetServiceRequest_Search", body)]
    expected = [e.source_id for e in world.of("yardi", "service_request") if e.data["property_code"] == code]
    assert sorted(all_ids) == sorted(expected) and all_ids

    latest = max(e.modified_ms for e in world.of("yardi", "service_request") if e.data["property_code"] == code)
    from syncflow.connectors.yardi import voyager_time

    _, body = await yardi_call(em, "GetServiceRequest_Search", YardiPropertyId=code, FromDate=voyager_time(latest))
    assert len(parse_result("GetServiceRequest_Search", body)) >= 1  # FromDate is inclusive
    _, body = await yardi_call(em, "GetServiceRequest_Search", YardiPropertyId=code, FromDate=voyager_time(latest + 1000))
    assert parse_result("GetServiceRequest_Search", body) is None  # empty ErrorMessages: no records

    status, body = await fetch("POST", f"{em.url}/Voyager/ItfServiceRequests.asmx",
                               data=soap_request("GetResidents", {**AUTH, "Password": "nope", "YardiPropertyId": code}))
    assert status == 200 and b"Invalid Username/Password" in body
    _, body = await yardi_call(em, "GetResidents", YardiPropertyId="zzz")
    assert b"Invalid property code zzz" in body
    _, body = await yardi_call(em, "GetPropertyConfigurations")
    codes = [p.findtext("Code") for p in parse_result("GetPropertyConfigurations", body)]
    assert codes == [p.data["property_code"] for p in world.properties("yardi")]


async def test_realpage_pages_next_links_and_local_modified_since(start, world: World) -> None:
    import json

    em = await start("realpage")
    prop = world.properties("realpage")[0]
    code, tz = prop.data["property_code"], prop.data["time_zone"]
    headers = {"Authorization": "Bearer local-key"}
    url = f"{em.url}/api/v1/properties/{code}/locations?pageSize=3"
    seen: list[str] = []
    while url:
        status, body = await fetch("GET", url, headers=headers)
        assert status == 200
        page = json.loads(body)
        seen += [r["locationId"] for r in page["data"]]
        url = page["links"]["next"]
    expected = [e for e in world.of("realpage", "location") if e.data["property_code"] == code]
    assert sorted(seen) == sorted(e.source_id for e in expected) and len(seen) > 3

    newest = max(expected, key=lambda e: e.modified_ms)
    from syncflow.connectors.realpage import local_time

    status, body = await fetch("GET", f"{em.url}/api/v1/properties/{code}/locations",
                               params={"modifiedSince": local_time(newest.modified_ms, tz)}, headers=headers)
    assert [r["locationId"] for r in json.loads(body)["data"]] == [newest.source_id]
    assert (await fetch("GET", f"{em.url}/api/v1/properties/nope/locations", headers=headers))[0] == 404
    assert (await fetch("GET", f"{em.url}/api/v1/properties/{code}/locations"))[0] == 401
    assert (await fetch("GET", f"{em.url}/api/v1/properties/{code}/locations?pageSize=0", headers=headers))[0] == 400


async def test_insight_cursor_feed_sees_updates_after_the_cursor(start, world: World) -> None:
    import json

    em = await start("insight")
    headers = {"X-Insight-Key": "local-key"}
    cursor, ids = "", []
    while True:
        _, body = await fetch("GET", f"{em.url}/v2/changes", params={"entity": "tickets", "cursor": cursor, "limit": "5"},
                              headers=headers)
        page = json.loads(body)
        ids += [r["ticket_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert sorted(ids) == sorted(e.source_id for e in world.of("insight", "service_request"))
    status, body = await fetch("POST", f"{em.url}/_emulator/changes", json={"count": 5})
    changed = {c["source_id"] for c in json.loads(body)["changed"] if c["entity_type"] == "service_request"}
    _, body = await fetch("GET", f"{em.url}/v2/changes", params={"entity": "tickets", "cursor": cursor}, headers=headers)
    assert {r["ticket_id"] for r in json.loads(body)["items"]} == changed
    assert (await fetch("GET", f"{em.url}/v2/changes", params={"entity": "tickets", "cursor": "garbage"},
                        headers=headers))[0] == 400
    assert encode_cursor(1, "a") != encode_cursor(1, "b")


async def test_lessen360_keyset_paging(start, world: World) -> None:
    import json

    em = await start("lessen360")
    headers = {"Authorization": "Token local-key"}
    params: dict[str, str] = {"limit": "4"}
    ids: list[str] = []
    while True:
        _, body = await fetch("GET", f"{em.url}/api/work-orders", params=params, headers=headers)
        page = json.loads(body)
        ids += [r["workOrderId"] for r in page["results"]]
        if not page["hasMore"]:
            break
        last = page["results"][-1]
        params = {"limit": "4", "updatedSince": str(last["updatedAtMs"]), "afterId": last["workOrderId"]}
    assert sorted(ids) == sorted(e.source_id for e in world.of("lessen360", "service_request"))
    assert len(ids) == len(set(ids))


async def test_changes_and_ground_truth(start) -> None:
    import json

    em = await start("realpage")
    before = {(r["entity_type"], r["source_id"]): r for r in await truth(em)}
    status, body = await fetch("POST", f"{em.url}/_emulator/changes", json={"count": 40})
    assert status == 200
    changed = json.loads(body)["changed"]
    after = {(r["entity_type"], r["source_id"]): r for r in await truth(em)}
    for c in changed:
        key = (c["entity_type"], c["source_id"])
        assert after[key]["modified_ms"] > max(r["modified_ms"] for r in before.values())
        assert after[key]["record"]["isDeleted"] is c["deleted"] is after[key]["deleted"]
    assert any(c["deleted"] for c in changed) and set(after) > set(before)
    assert (await fetch("POST", f"{em.url}/_emulator/changes", json={"count": -1}))[0] == 400


async def test_faults_errors_auth_malformed_latency_timeout(start, world: World) -> None:
    import json
    import time

    em = await start("lessen360")
    url, headers = f"{em.url}/api/work-orders", {"Authorization": "Token local-key"}

    async def set_faults(**faults: Any) -> None:
        status, _ = await fetch("POST", f"{em.url}/_emulator/faults", json=faults)
        assert status == 200

    await set_faults(error_rate=1.0)
    assert (await fetch("GET", url, headers=headers))[0] == 503
    await set_faults(auth_fail=True)
    assert (await fetch("GET", url, headers=headers))[0] == 401
    await set_faults(malformed_rate=1.0)
    status, body = await fetch("GET", url, headers=headers)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    await set_faults(latency_ms=300)
    started = time.monotonic()
    assert (await fetch("GET", url, headers=headers))[0] == 200
    assert time.monotonic() - started >= 0.3
    await set_faults(timeout_rate=1.0, timeout_s=5.0)
    with pytest.raises(asyncio.TimeoutError):
        await fetch("GET", url, headers=headers, timeout=aiohttp.ClientTimeout(total=0.3))
    assert (await fetch("POST", f"{em.url}/_emulator/faults", json={"explode": 1}))[0] == 400
    await set_faults()
    assert (await fetch("GET", url, headers=headers))[0] == 200
    _, body = await fetch("GET", f"{em.url}/_emulator/stats")
    stats = json.loads(body)
    assert stats["errors"] == stats["auth_failures"] == stats["malformed"] == stats["timeouts"] == 1


async def test_yardi_injected_auth_failure_is_in_band(start, world: World) -> None:
    em = await start("yardi")
    await fetch("POST", f"{em.url}/_emulator/faults", json={"auth_fail": True})
    status, body = await yardi_call(em, "GetPropertyConfigurations")
    assert status == 200 and b"Invalid Username/Password" in body
    assert ET.fromstring(body) is not None
