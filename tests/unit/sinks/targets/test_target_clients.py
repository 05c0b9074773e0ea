"""Target clients against the emulators: payloads land, answers become typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from syncflow.emulators.targets import emulator_state, emulator_url, start_target_emulator
from syncflow.errors import DependencyNotMetError, PermanentTargetError, RateLimitedError, TransientTargetError
from syncflow.sinks.targets import Delivery, Lessen360TargetClient, OneClient, error_for, parse_retry_after
from syncflow.settings import TargetSettings

LOC_ONE = Delivery("location", "loc-1", 1, "upsert", "locations", {"propertyCode": "P1", "kind": "unit"})
WO_ONE = Delivery("service_request", "sr-1", 1, "upsert", "work-orders",
                  {"locationExternalId": "loc-1", "category": "hvac", "status": "open", "requestedAt": "2024-01-01"})
LOC_L360 = Delivery("location", "loc-1", 1, "upsert", "locations", {"property_code": "P1", "location_kind": "unit"})


@pytest.fixture
async def one_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("one", credential="secret")
    yield runner
    await runner.cleanup()


@pytest.fixture
async def lessen_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("lessen360", credential="secret")
    yield runner
    await runner.cleanup()


def settings_for(runner: web.AppRunner, **kw: object) -> TargetSettings:
    return TargetSettings(base_url=emulator_url(runner), api_key="secret", timeout_s=1.0, **kw)


def test_error_mapping() -> None:
    assert error_for(200, "") is None
    assert isinstance(error_for(503, "x"), TransientTargetError)
    assert isinstance(error_for(408, "x"), TransientTargetError)
    rl = error_for(429, "slow down", retry_after="7")
    assert isinstance(rl, RateLimitedError) and rl.retry_after == 7.0
    perm = error_for(422, "category required")
    assert isinstance(perm, PermanentTargetError) and perm.status == 422 and "category required" in str(perm)
    dep = error_for(409, "unknown", missing=[("locations", "loc-1")])
    assert isinstance(dep, DependencyNotMetError) and dep.missing == [("locations", "loc-1")]
    assert parse_retry_after(None) == 1.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_one_client_delivers_and_maps_errors(one_emulator: web.AppRunner) -> None:
    async with OneClient(settings_for(one_emulator)) as client:
        dep, = await client.deliver([WO_ONE])
        assert isinstance(dep.error, DependencyNotMetError)
        loc, = await client.deliver([LOC_ONE])
        assert loc.ok and loc.target_ref and loc.target_ref.startswith("ONE-")
        wo, = await client.deliver([WO_ONE])
        assert wo.ok
        bad, = await client.deliver([Delivery("location", "loc-2", 1, "upsert", "locations", {"kind": "unit"})])
        assert isinstance(bad.error, PermanentTargetError) and bad.error.status == 422
        assert "propertyCode" in str(bad.error)
        gone, = await client.deliver([Delivery("location", "loc-9", 2, "delete", "locations", None)])
        assert gone.ok
    state = emulator_state(one_emulator)
    assert [(a.external_id, a.idempotency_key) for a in state.received] == [("loc-1", "loc-1:1"), ("sr-1", "sr-1:1")]


async def test_one_client_transient_and_rate_limited(one_emulator: web.AppRunner) -> None:
    state = emulator_state(one_emulator)
    async with OneClient(settings_for(one_emulator)) as client:
        state.set_faults({"fail_next": 1})
        r, = await client.deliver([LOC_ONE])
        assert isinstance(r.error, TransientTargetError) and r.error.status == 503
        state.set_faults({"timeout_rate": 1.0, "hang_s": 3})
        r, = await client.deliver([LOC_ONE])
        assert isinstance(r.error, TransientTargetError) and "timeout" in str(r.error)
        state.set_faults({"timeout_rate": 0, "reset_rate": 1.0})
        r, = await client.deliver([LOC_ONE])
        assert isinstance(r.error, TransientTargetError) and "connection" in str(r.error)


async def test_a_429_holds_back_the_clients_calls_until_its_retry_after(one_emulator: web.AppRunner) -> None:
    """One call at a time: the first is answered 429; the two waiting for the slot are not
    sent (no status: nothing reached the target) until the Retry-After has passed."""
    state = emulator_state(one_emulator)
    locs = [Delivery("location", f"loc-{i}", 1, "upsert", "locations", {"propertyCode": "P1", "kind": "unit"}) for i in range(3)]
    async with OneClient(settings_for(one_emulator, concurrency=1)) as client:
        state.set_faults({"next_429": 1, "retry_after_s": 0.5})
        results = await client.deliver(locs)
        assert all(isinstance(r.error, RateLimitedError) for r in results)
        assert sorted(r.error.status or 0 for r in results) == [0, 0, 429]  # type: ignore[union-attr]
        assert all(0 < r.error.retry_after <= 0.5 for r in results)  # type: ignore[union-attr]
        assert state.counters["requests"] == 1
        await asyncio.sleep(0.6)
        assert all(r.ok for r in await client.deliver(locs))
    assert state.counters["requests"] == 4


async def test_one_client_wrong_token_is_permanent(one_emulator: web.AppRunner) -> None:
    async with OneClient(settings_for(one_emulator).model_copy(update={"api_key": "wrong"})) as client:
        r, = await client.deliver([LOC_ONE])
    assert isinstance(r.error, PermanentTargetError) and r.error.status == 401


async def test_lessen360_client_batches_and_mixes_outcomes(lessen_emulator: web.AppRunner) -> None:
    wo = Delivery("service_request", "sr-1", 1, "upsert", "work_orders",
                  {"location_external_id": "loc-1", "trade": "hvac", "state": "open", "reported_at": "2024-01-01"})
    orphan = Delivery("service_request", "sr-2", 1, "upsert", "work_orders",
                      {"location_external_id": "loc-x", "trade": "hvac", "state": "open", "reported_at": "2024-01-01"})
    bad = Delivery("location", "loc-2", 1, "upsert", "locations", {"property_code": "P2"})
    locs = [Delivery("location", f"loc-b{i}", 1, "upsert", "locations", {"property_code": "P", "location_kind": "unit"}) for i in range(5)]
    state = emulator_state(lessen_emulator)
    async with Lessen360TargetClient(settings_for(lessen_emulator, batch_max=3)) as client:
        results = await client.deliver([LOC_L360, wo, orphan, bad, *locs])
        assert [r.ok for r in results] == [True, True, False, False] + [True] * 5
        assert isinstance(results[2].error, DependencyNotMetError)
        assert isinstance(results[3].error, PermanentTargetError) and results[3].error.status == 400
        assert state.counters["requests"] == 3  # 9 records in batches of 3
        state.set_faults({"fail_next": 1})
        results = await client.deliver(locs[:2])
        assert all(isinstance(r.error, TransientTargetError) for r in results)
        state.set_faults({"force_429_s": 5, "retry_after_s": 2})
        results = await client.deliver(locs[:1])
        assert isinstance(results[0].error, RateLimitedError) and results[0].error.retry_after == 2.0
