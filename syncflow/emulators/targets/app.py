"""Build and start a target emulator: the target's own API plus an inspection API.

    GET  /_emulator/received   every applied request (entity, version, key, time, payload)
    GET  /_emulator/state      entity → version, counters, out-of-order deliveries, faults
    GET  /_emulator/counters   the counters alone (cheap to poll while a run is going)
    POST /_emulator/faults     {"error_rate": 0.2, "force_429_s": 5, "answer_modes": {"loc-1": "html"}, ...}
                               (see core.Faults and core.ANSWER_MODES)
    POST /_emulator/reset      forget everything and clear the faults
    POST /_emulator/tamper     drift behind syncflow's back, one change or a list:
                               {"action": "lose"|"corrupt"|"rollback", "collection", "external_id",
                                "fields": {...} (corrupt)}  (see core.EmulatorState.tamper)
    POST /oauth/token          OAuth2 client credentials (when built with an OAuth2Client):
                               service calls then need a bearer token it issued, not expired

With a `prefix` ("/api") every route, the inspection API included, is served under it, as a
target behind a gateway path is; `emulator_url` includes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from syncflow.emulators.targets import lessen360, one
from syncflow.emulators.targets.core import EmulatorState, OAuth2Client
from syncflow.settings import Settings

STATE_KEY = web.AppKey("emulator_state", EmulatorState)
PREFIX_KEY = web.AppKey("emulator_prefix", str)

# target name → (routes(state, credential), prefix of the ids the target hands out)
TARGET_APIS: dict[str, tuple[Callable[[EmulatorState, str], list[web.RouteDef]], str]] = {
    "one": (one.routes, "ONE"),
    "lessen360": (lessen360.routes, "L360"),
}


def build_app(name: str, credential: str = "local-key", *, prefix: str = "", oauth2: OAuth2Client | None = None,
              **faults: Any) -> web.Application:
    """The aiohttp app of target `name` served under `prefix`, with `faults` applied from the
    start; with `oauth2`, service calls need a bearer token from its token endpoint."""
    if name not in TARGET_APIS:
        raise ValueError(f"no emulator for target {name!r}; known: {', '.join(TARGET_APIS)}")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    make_routes, ref_prefix = TARGET_APIS[name]
    state = EmulatorState(name=name, ref_prefix=ref_prefix, oauth2=oauth2)
    if faults:
        state.set_faults(faults)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state
    app[PREFIX_KEY] = prefix
    routes = [*make_routes(state, credential), web.post("/oauth/token", state.token_endpoint)]

    async def received(_: web.Request) -> web.Response:
        return web.json_response(state.received_json())

    async def current(_: web.Request) -> web.Response:
        return web.json_response(state.state_json())

    async def counters(_: web.Request) -> web.Response:
        return web.json_response(dict(state.counters))

    async def set_faults(request: web.Request) -> web.Response:
        try:
            state.set_faults(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(state.state_json()["faults"])

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"reset": True})

    async def tamper(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            changes = body if isinstance(body, list) else [body]
            done = [state.tamper(str(c["action"]), str(c["collection"]), str(c["external_id"]), c.get("fields"))
                    for c in changes]
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"tampered": done})

    routes += [
        web.get("/_emulator/received", received),
        web.get("/_emulator/state", current),
        web.get("/_emulator/counters", counters),
        web.post("/_emulator/faults", set_faults),
        web.post("/_emulator/reset", reset),
        web.post("/_emulator/tamper", tamper),
    ]
    app.add_routes([web.RouteDef(r.method, prefix + r.path, r.handler, r.kwargs) for r in routes])
    return app


async def start_target_emulator(name: str, host: str = "127.0.0.1", port: int = 0, credential: str = "local-key", *,
                                prefix: str = "", oauth2: OAuth2Client | None = None, **faults: Any) -> web.AppRunner:
    """Serve target `name` until `await runner.cleanup()`. With port 0 the OS picks one:
    read the base URL back with `emulator_url(runner)`."""
    app = build_app(name, credential, prefix=prefix, oauth2=oauth2, **faults)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


async def start_all_target_emulators(settings: Settings, host: str | None = None, **faults: Any) -> list[web.AppRunner]:
    """Every configured target that has an emulator, on the port and under the path of its
    base_url (bound to `host` when given, else to settings.http_host), with its api_key as
    the credential, or its OAuth2 client when it has one (the token endpoint is then
    <base_url>/oauth/token, whatever oauth2_token_url says)."""
    runners = []
    for name, target in settings.sync_out.targets.items():
        if name not in TARGET_APIS:
            continue
        url = urlparse(target.base_url)
        oauth2 = None
        if target.oauth2_token_url and target.oauth2_client_id and target.oauth2_client_secret:
            oauth2 = OAuth2Client(target.oauth2_client_id, target.oauth2_client_secret.get_secret_value())
        runners.append(await start_target_emulator(
            name, host or settings.http_host, url.port or 80, target.api_key, prefix=url.path, oauth2=oauth2, **faults))
    return runners


def emulator_url(runner: web.AppRunner) -> str:
    """The base URL a started emulator serves its API under (its prefix included)."""
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}{runner.app[PREFIX_KEY]}"


def emulator_state(runner: web.AppRunner) -> EmulatorState:
    """In-process access to an emulator's memory (tests in the same process)."""
    return runner.app[STATE_KEY]
