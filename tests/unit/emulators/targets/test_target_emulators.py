"""The target emulators over real HTTP: formats, auth, idempotency, validation, dependency
answers, 429 with Retry-After, injected faults and the inspection API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from syncflow.emulators.targets import emulator_url, start_target_emulator

ONE_AUTH = {"Authorization": "Bearer local-key"}
L360_AUTH = {"X-Api-Key": "local-key"}
LOCATION = {"propertyCode": "P1", "kind": "unit"}
WORK_ORDER = {"locationExternalId": "loc-1", "category": "plumbing", "status": "open", "requestedAt": "2024-01-01T00:00:00Z"}


@pytest.fixture
async def one() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner = await start_target_emulator("one")
    async with aiohttp.ClientSession(base_url=emulator_url(runner)) as s:
        yield emulator_url(runner), s
    await runner.cleanup()


@pytest.fixture
async def lessen() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner = await start_target_emulator("lessen360")
    async with aiohttp.ClientSession(base_url=emulator_url(runner)) as s:
        yield emulator_url(runner), s
    await runner.cleanup()


async def test_one_put_is_idempotent_and_returns_its_own_id(one) -> None:
    _, s = one
    h = {**ONE_AUTH, "Idempotency-Key": "loc-1:1"}
    async with s.put("/api/v2/locations/loc-1", json=LOCATION, headers=h) as r1:
        first = (r1.status, await r1.json())
    async with s.put("/api/v2/locations/loc-1", json=LOCATION, headers=h) as r2:
        second = (r2.status, await r2.json())
    assert first == second
    assert first[0] == 201 and first[1]["id"].startswith("ONE-")
    async with s.get("/_emulator/received") as r:
        received = await r.json()
    assert [(x["external_id"], x["version"], x["idempotency_key"]) for x in received] == [("loc-1", 1, "loc-1:1")]
    async with s.get("/_emulator/state") as r:
        state = await r.json()
    assert state["entities"]["locations/loc-1"]["version"] == 1
    assert state["counters"]["replays"] == 1
    async with s.get("/_emulator/counters") as r:
        assert await r.json() == state["counters"]


async def test_one_refuses_bad_token_missing_fields_and_unknown_location(one) -> None:
    _, s = one
    async with s.put("/api/v2/locations/x", json=LOCATION, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    async with s.put("/api/v2/locations/x", json={"kind": "unit"}, headers=ONE_AUTH) as r:
        body = await r.json()
        assert r.status == 422 and body["error"]["details"] == [{"field": "propertyCode", "issue": "required"}]
    async with s.put("/api/v2/work-orders/sr-1", json=WORK_ORDER, headers=ONE_AUTH) as r:
        body = await r.json()
        assert r.status == 409 and body["error"]["missing"] == [{"collection": "locations", "externalId": "loc-1"}]
    async with s.put("/api/v2/locations/loc-1", json=LOCATION, headers=ONE_AUTH) as r:
        assert r.status == 201
    async with s.put("/api/v2/work-orders/sr-1", json=WORK_ORDER, headers=ONE_AUTH) as r:
        assert r.status == 201


async def test_one_delete_and_out_of_order_record(one) -> None:
    _, s = one
    for v in (2, 1):
        async with s.put("/api/v2/locations/loc-1", json=LOCATION, headers={**ONE_AUTH, "Idempotency-Key": f"loc-1:{v}"}) as r:
            assert r.status in (200, 201)
    async with s.delete("/api/v2/locations/loc-1", headers={**ONE_AUTH, "Idempotency-Key": "loc-1:3"}) as r:
        assert r.status == 200
    async with s.delete("/api/v2/locations/loc-9", headers=ONE_AUTH) as r:
        assert r.status == 404
    async with s.get("/_emulator/state") as r:
        state = await r.json()
    assert state["out_of_order"] == [{"entity_type": "locations", "external_id": "loc-1", "version": 1, "after": 2}]
    assert state["entities"]["locations/loc-1"]["deleted"] is True


async def test_rate_limit_and_forced_429_carry_retry_after(one) -> None:
    _, s = one
    forced_at = time.monotonic()  # the window starts after this
    async with s.post("/_emulator/faults", json={"force_429_s": 0.3, "retry_after_s": 2}) as r:
        assert r.status == 200
    answers = []
    while True:  # 429 for the whole window, then served again
        async with s.put("/api/v2/locations/a", json=LOCATION, headers=ONE_AUTH) as r:
            answers.append((r.status, r.headers.get("Retry-After"), time.monotonic() - forced_at))
        if r.status != 429:
            break
        assert answers[-1][2] < 10, "the forced 429s never ended"
        await asyncio.sleep(0.02)
    status, _, after = answers[-1]
    assert status == 201 and after >= 0.3  # not served before the window ended
    assert all(a[:2] == (429, "2") for a in answers[:-1])
    async with s.post("/_emulator/faults", json={"force_429_s": 30}) as r:
        assert r.status == 200
    async with s.put("/api/v2/locations/a", json=LOCATION, headers=ONE_AUTH) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "2"  # inside a window, whatever the load
    async with s.post("/_emulator/faults", json={"force_429_s": 0, "rate_limit_per_minute": 1}) as r:
        assert r.status == 200
    statuses = []
    for i in range(3):  # one token, the next in 60 s
        async with s.put(f"/api/v2/locations/b{i}", json=LOCATION, headers=ONE_AUTH) as r:
            statuses.append(r.status)
    assert statuses == [201, 429, 429]


async def test_fail_next_then_success_and_reset(one) -> None:
    _, s = one
    async with s.post("/_emulator/faults", json={"fail_next": 2}) as r:
        assert r.status == 200
    statuses = []
    for _ in range(3):
        async with s.put("/api/v2/locations/a", json=LOCATION, headers=ONE_AUTH) as r:
            statuses.append(r.status)
    assert statuses == [503, 503, 201]
    async with s.post("/_emulator/faults", json={"no_such_fault": 1}) as r:
        assert r.status == 400
    async with s.post("/_emulator/reset") as r:
        assert r.status == 200
    async with s.get("/_emulator/received") as r:
        assert await r.json() == []


async def test_connection_reset_and_hang(one) -> None:
    url, s = one
    async with s.post("/_emulator/faults", json={"reset_rate": 1.0}) as r:
        assert r.status == 200
    with pytest.raises(aiohttp.ClientError):
        async with s.put("/api/v2/locations/a", json=LOCATION, headers=ONE_AUTH) as r:
            await r.read()
    async with aiohttp.ClientSession(base_url=url) as s2:
        async with s2.post("/_emulator/faults", json={"reset_rate": 0, "timeout_rate": 1.0, "hang_s": 5}) as r:
            assert r.status == 200
        with pytest.raises(asyncio.TimeoutError):
            async with s2.put("/api/v2/locations/a", json=LOCATION, headers=ONE_AUTH, timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                await r.read()


async def test_lessen360_batch_applies_in_order_with_per_operation_results(lessen) -> None:
    _, s = lessen
    ops = [
        {"op": "upsert", "resource": "locations", "external_id": "loc-1", "idempotency_key": "loc-1:1",
         "data": {"property_code": "P1", "location_kind": "unit"}},
        {"op": "upsert", "resource": "work_orders", "external_id": "sr-1", "idempotency_key": "sr-1:1",
         "data": {"location_external_id": "loc-1", "trade": "hvac", "state": "open", "reported_at": "2024-01-01"}},
        {"op": "upsert", "resource": "work_orders", "external_id": "sr-2", "idempotency_key": "sr-2:1",
         "data": {"location_external_id": "loc-404", "trade": "hvac", "state": "open", "reported_at": "2024-01-01"}},
        {"op": "upsert", "resource": "residents", "external_id": "res-1", "idempotency_key": "res-1:1", "data": {"first_name": "A"}},
    ]
    async with s.post("/v1/batch", json={"operations": ops}, headers=L360_AUTH) as r:
        assert r.status == 200
        results = (await r.json())["results"]
    assert [x["status"] for x in results] == ["ok", "ok", "error", "error"]
    assert results[0]["id"].startswith("L360-")
    assert results[2]["http_status"] == 422 and results[2]["error"]["code"] == "reference_not_found"
    assert results[3]["http_status"] == 400 and results[3]["error"]["fields"] == {"last_name": "is required"}
    async with s.post("/v1/batch", json={"operations": ops[:2]}, headers=L360_AUTH) as r:
        again = (await r.json())["results"]
    assert [x["id"] for x in again] == [x["id"] for x in results[:2]]
    async with s.get("/_emulator/received") as r:
        assert len(await r.json()) == 2
    async with s.post("/v1/batch", json={"operations": ops}, headers={"X-Api-Key": "wrong"}) as r:
        assert r.status == 401


async def test_lessen360_single_record_endpoint(lessen) -> None:
    _, s = lessen
    h = {**L360_AUTH, "Idempotency-Key": "loc-1:1"}
    async with s.put("/v1/locations/loc-1", json={"property_code": "P1", "location_kind": "unit"}, headers=h) as r:
        assert r.status == 201
    async with s.delete("/v1/locations/loc-1", headers={**L360_AUTH, "Idempotency-Key": "loc-1:2"}) as r:
        assert r.status == 200


@pytest.mark.parametrize("target, auth, path, size, error", [
    ("one", ONE_AUTH, "/api/v2/locations", "limit", {"code": "BAD_QUERY", "message": "limit must be a number"}),
    ("lessen360", L360_AUTH, "/v1/locations", "page_size",
     {"code": "validation_failed", "message": "page_size must be a number", "fields": {"page_size": "a number"}}),
])
async def test_read_side_refusals_in_each_targets_own_words(target: str, auth: dict, path: str, size: str, error: dict) -> None:
    runner = await start_target_emulator(target)
    try:
        async with aiohttp.ClientSession(base_url=emulator_url(runner)) as s:
            async with s.get(path, params={size: "many"}, headers=auth) as r:
                assert (r.status, await r.json()) == (400, {"error": error})
            async with s.get(f"{path}/nobody", headers=auth) as r:
                assert r.status == 404 and (await r.json())["error"]["message"] == "locations/nobody does not exist"
            async with s.get(path) as r:
                assert r.status == 401
            async with s.get(path.rsplit("/", 1)[0] + "/planets", headers=auth) as r:
                assert r.status == 404
    finally:
        await runner.cleanup()


async def test_all_configured_targets_start_on_their_base_url_ports() -> None:
    import socket

    from syncflow.settings import Settings

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    s = Settings()
    targets = {name: t.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}", "api_key": f"{name}-key"})
               for name, t in s.sync_out.targets.items()}
    s = s.model_copy(update={"sync_out": s.sync_out.model_copy(update={"targets": targets})})
    from syncflow.emulators.targets import start_all_target_emulators

    runners = await start_all_target_emulators(s, error_rate=0.0)
    try:
        assert sorted(emulator_url(r) for r in runners) == sorted(t.base_url for t in targets.values())
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{targets['one'].base_url}/api/v2/locations/l1", json=LOCATION,
                                   headers={"Authorization": "Bearer one-key"}) as r:
                assert r.status == 201
    finally:
        for r in runners:
            await r.cleanup()
