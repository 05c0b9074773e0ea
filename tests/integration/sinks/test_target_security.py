"""Target clients against the real target emulators as a secured deployment meets them: a base
URL with a path prefix, OAuth2 client credentials (a token fetched, kept, refreshed before it
expires and once after a 401), and redirects to another origin that never carry a credential."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from syncflow.emulators.targets import OAuth2Client, emulator_state, emulator_url, start_target_emulator
from syncflow.errors import PermanentTargetError
from syncflow.sinks.targets import Delivery, Lessen360TargetClient, OneClient, TargetClient, join_url
from syncflow.settings import TargetSettings

pytestmark = pytest.mark.integration

LOC_ONE = Delivery("location", "loc-1", 1, "upsert", "locations", {"propertyCode": "P1", "kind": "unit"})
LOC_L360 = Delivery("location", "loc-1", 1, "upsert", "locations", {"property_code": "P1", "location_kind": "unit"})
CLIENTS: dict[str, tuple[type[TargetClient], Delivery]] = {"one": (OneClient, LOC_ONE), "lessen360": (Lessen360TargetClient, LOC_L360)}
API_KEY = "static-key-9f2c"
CLIENT_ID, CLIENT_SECRET = "syncflow-client", "client-secret-61ad"


def delivery(n: int, target: str = "one") -> Delivery:
    base = CLIENTS[target][1]
    return Delivery(base.entity_type, f"loc-{n}", 1, base.op, base.resource, base.payload)


def test_join_url_keeps_the_prefix_with_one_slash() -> None:
    for base in ("http://h:1/api", "http://h:1/api/"):
        for path in ("/v1/batch", "v1/batch"):
            assert join_url(base, path) == "http://h:1/api/v1/batch"
    assert join_url("http://h:1", "/api/v2/x") == "http://h:1/api/v2/x"


@pytest.mark.parametrize("target", list(CLIENTS))
@pytest.mark.parametrize("slash", ["", "/"])
async def test_a_base_url_with_a_path_prefix_delivers(target: str, slash: str) -> None:
    runner = await start_target_emulator(target, credential=API_KEY, prefix="/gw/targets")
    try:
        base_url = emulator_url(runner) + slash
        assert base_url.split("/", 3)[3].rstrip("/") == "gw/targets"
        client_type, record = CLIENTS[target]
        async with client_type(TargetSettings(base_url=base_url, api_key=API_KEY, timeout_s=2.0)) as client:
            [result] = await client.deliver([record])
        assert result.ok, result.error
        state = emulator_state(runner)
        assert [(a.external_id, a.idempotency_key) for a in state.received] == [("loc-1", "loc-1:1")]
        # the emulator really serves under the prefix only: the same call without it is a 404
        async with aiohttp.ClientSession() as session:
            root = emulator_url(runner).removesuffix("/gw/targets")
            async with session.put(f"{root}/api/v2/locations/loc-2", json={}, headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
                assert resp.status == 404
    finally:
        await runner.cleanup()


@pytest.fixture
async def one_oauth() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("one", prefix="/api", oauth2=OAuth2Client(CLIENT_ID, CLIENT_SECRET, token_ttl_s=1.5))
    yield runner
    await runner.cleanup()


def oauth_settings(runner: web.AppRunner, *, secret: str = CLIENT_SECRET, margin: float = 0.5) -> TargetSettings:
    return TargetSettings(
        base_url=emulator_url(runner), api_key="not-used", timeout_s=2.0,
        oauth2_token_url=emulator_url(runner) + "/oauth/token", oauth2_client_id=CLIENT_ID,
        oauth2_client_secret=secret, oauth2_refresh_margin_s=margin,
    )


async def test_the_emulator_refuses_a_bad_client_and_an_expired_token(one_oauth: web.AppRunner) -> None:
    url = emulator_url(one_oauth)
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials"}
        async with session.post(f"{url}/oauth/token", data=form, auth=aiohttp.BasicAuth(CLIENT_ID, "wrong")) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "invalid_client"
        async with session.post(f"{url}/oauth/token", data={**form, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}) as resp:
            assert resp.status == 200
            token = (await resp.json())["access_token"]
        issued = time.monotonic()
        put = f"{url}/api/v2/locations/loc-1"
        async with session.put(put, json=LOC_ONE.payload, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 201
        async with session.put(put, json=LOC_ONE.payload, headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
            assert resp.status == 401  # a token it did not issue
        await asyncio.sleep(max(0.0, issued + 1.6 - time.monotonic()))
        async with session.put(put, json=LOC_ONE.payload, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 401 and "expired" in (await resp.json())["error"]["message"]


async def test_oauth2_token_fetched_kept_and_refreshed_before_it_expires(one_oauth: web.AppRunner) -> None:
    state = emulator_state(one_oauth)
    async with OneClient(oauth_settings(one_oauth, margin=0.5)) as client:
        started = time.monotonic()
        assert all(r.ok for r in await client.deliver([delivery(1), delivery(2), delivery(3)]))
        [r] = await client.deliver([delivery(4)])
        assert r.ok
        assert state.counters.get("tokens_issued") == 1  # concurrent calls shared one fetch, then kept it
        assert time.monotonic() - started < 1.0, "the test's timing assumption (ttl 1.5 s, margin 0.5 s) broke"
        # past ttl - margin but before the token expired: a new one is fetched before the call
        await asyncio.sleep(max(0.0, started + 1.1 - time.monotonic()))
        [r] = await client.deliver([delivery(5)])
        assert r.ok and state.counters.get("tokens_issued") == 2
        # well after every token expired: fetched again, and never a 401 on the way
        await asyncio.sleep(1.6)
        [r] = await client.deliver([delivery(6)])
        assert r.ok and state.counters.get("tokens_issued") == 3
    assert state.counters.get("tokens_refused", 0) == 0
    assert len(state.received) == 6


async def test_a_401_fetches_one_new_token_and_retries_once(one_oauth: web.AppRunner) -> None:
    state = emulator_state(one_oauth)
    state.oauth2.token_ttl_s = 60.0  # type: ignore[union-attr]
    async with OneClient(oauth_settings(one_oauth)) as client:
        [r] = await client.deliver([delivery(1)])
        assert r.ok and state.counters["tokens_issued"] == 1
        state.revoke_tokens()  # the client's token is still fresh to it, unknown to the target
        results = await client.deliver([delivery(2), delivery(3), delivery(4)])
        assert all(r.ok for r in results), [r.error for r in results]
        assert state.counters["tokens_issued"] == 2  # one refresh for all three refused calls
        assert state.counters["tokens_refused"] == 3
        # a target refusing even a fresh token: exactly one refresh, then the 401 is the answer
        state.revoke_tokens()
        state.oauth2.token_ttl_s = 0.0  # type: ignore[union-attr]
        [r] = await client.deliver([delivery(5)])
        assert isinstance(r.error, PermanentTargetError) and r.error.status == 401
        assert state.counters["tokens_issued"] == 3 and state.counters["tokens_refused"] == 5
    assert [a.external_id for a in state.received] == ["loc-1", "loc-2", "loc-3", "loc-4"]


async def test_oauth2_for_lessen360_sends_a_bearer_token() -> None:
    runner = await start_target_emulator("lessen360", credential=API_KEY, oauth2=OAuth2Client(CLIENT_ID, CLIENT_SECRET))
    try:
        async with Lessen360TargetClient(oauth_settings(runner)) as client:
            results = await client.deliver([delivery(1, "lessen360"), delivery(2, "lessen360")])
        assert all(r.ok for r in results), [r.error for r in results]
        assert emulator_state(runner).counters["tokens_issued"] == 1
    finally:
        await runner.cleanup()


async def test_a_wrong_client_secret_fails_each_record_without_raising(one_oauth: web.AppRunner) -> None:
    settings = oauth_settings(one_oauth, secret="wrong-secret-0000")
    assert "wrong-secret-0000" not in repr(settings) and "wrong-secret-0000" not in str(settings.model_dump())
    async with OneClient(settings) as client:
        [r] = await client.deliver([delivery(1)])
    assert isinstance(r.error, PermanentTargetError) and r.error.status == 401
    assert "token endpoint" in str(r.error) and "wrong-secret-0000" not in str(r.error)
    assert emulator_state(one_oauth).received == []


@dataclass
class Foreign:
    """Another origin: records every request that reaches it."""

    url: str = ""
    requests: list[dict[str, object]] = field(default_factory=list)


@pytest.fixture
async def foreign() -> AsyncIterator[Foreign]:
    seen = Foreign()

    async def record(request: web.Request) -> web.Response:
        seen.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                              "body": await request.text()})
        return web.json_response({"id": "FOREIGN-1", "results": [{"index": 0, "status": "ok", "http_status": 200, "id": "F"}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0)  # another origin than the emulators' 127.0.0.1
    await site.start()
    port = runner.addresses[0][1]
    seen.url = f"http://localhost:{port}"
    yield seen
    await runner.cleanup()


def carries_a_credential(request: dict[str, object], secrets: list[str]) -> bool:
    text = repr(request)
    headers = {k.lower() for k in request["headers"]}  # type: ignore[union-attr]
    return bool({"authorization", "x-api-key"} & headers) or any(s in text for s in secrets)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", list(CLIENTS))
async def test_a_redirect_to_another_origin_gets_no_api_key(foreign: Foreign, target: str, status: int) -> None:
    runner = await start_target_emulator(target, credential=API_KEY, prefix="/api",
                                         redirect_to=foreign.url, redirect_status=status)
    try:
        client_type, record = CLIENTS[target]
        async with client_type(TargetSettings(base_url=emulator_url(runner), api_key=API_KEY, timeout_s=2.0)) as client:
            [r] = await client.deliver([record])
        assert emulator_state(runner).counters["redirects"] == 1  # authenticated, then redirected
        assert isinstance(r.error, PermanentTargetError) and r.error.status == status and "redirect" in str(r.error)
        assert not any(carries_a_credential(q, [API_KEY]) for q in foreign.requests)
        assert foreign.requests == []  # not followed at all
    finally:
        await runner.cleanup()


async def test_a_redirect_to_another_origin_gets_no_oauth2_token_or_client_secret(foreign: Foreign) -> None:
    runner = await start_target_emulator("one", prefix="/api", oauth2=OAuth2Client(CLIENT_ID, CLIENT_SECRET, token_ttl_s=60))
    state = emulator_state(runner)
    try:
        async with OneClient(oauth_settings(runner)) as client:
            [r] = await client.deliver([delivery(1)])
            assert r.ok
            token = next(iter(state.access_tokens))
            state.set_faults({"redirect_to": foreign.url})  # the service calls, then the token endpoint
            [r] = await client.deliver([delivery(2)])
            assert isinstance(r.error, PermanentTargetError) and r.error.status == 307
            client.oauth2.refused(token)  # type: ignore[union-attr]  # the next call asks for a token
            [r] = await client.deliver([delivery(3)])
            assert isinstance(r.error, PermanentTargetError) and r.error.status == 307 and "token endpoint" in str(r.error)
        assert state.counters["redirects"] == 2 and state.counters["token_requests"] == 2
        assert not any(carries_a_credential(q, [token, CLIENT_SECRET]) for q in foreign.requests)
        assert foreign.requests == []
    finally:
        await runner.cleanup()
