"""Build and start a target emulator: the target's own API plus an inspection API.

    GET  /_emulator/received   every applied request (entity, version, key, time, payload)
    GET  /_emulator/state      entity → version, counters, out-of-order deliveries, faults
    POST /_emulator/faults     {"error_rate": 0.2, "force_429_s": 5, "answer_modes": {"loc-1": "html"}, ...}
                               (see core.Faults and core.ANSWER_MODES)
    POST /_emulator/reset      forget everything and clear the faults
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from syncflow.emulators.targets import lessen360, one
from syncflow.emulators.targets.core import EmulatorState
from syncflow.streams.settings import Settings

STATE_KEY = web.AppKey("emulator_state", EmulatorState)

# target name → (routes(state, credential), prefix of the ids the target hands out)
TARGET_APIS: dict[str, tuple[Callable[[EmulatorState, str], list[web.RouteDef]], str]] = {
    "one": (one.routes, "ONE"),
    "lessen360": (lessen360.routes, "L360"),
}


def build_app(name: str, credential: str = "local-key", **faults: Any) -> web.Application:
    """The aiohttp app of target `name`, with `faults` applied from the start."""
    if name not in TARGET_APIS:
        raise ValueError(f"no emulator for target {name!r}; known: {', '.join(TARGET_APIS)}")
    make_routes, prefix = TARGET_APIS[name]
    state = EmulatorState(name=name, ref_prefix=prefix)
    if faults:
        state.set_faults(faults)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state
    app.add_routes(make_routes(state, credential))

    async def received(_: web.Request) -> web.Response:
        return web.json_response(state.received_json())

    async def current(_: web.Request) -> web.Response:
        return web.json_response(state.state_json())

    async def set_faults(request: web.Request) -> web.Response:
        try:
            state.set_faults(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(state.state_json()["faults"])

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"reset": True})

    app.add_routes([
        web.get("/_emulator/received", received),
        web.get("/_emulator/state", current),
        web.post("/_emulator/faults", set_faults),
        web.post("/_emulator/reset", reset),
    ])
    return app


async def start_target_emulator(name: str, host: str = "127.0.0.1", port: int = 0, credential: str = "local-key", **faults: Any) -> web.AppRunner:
    """Serve target `name` until `await runner.cleanup()`. With port 0 the OS picks one:
    read it back with `emulator_url(runner)`."""
    runner = web.AppRunner(build_app(name, credential, **faults), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


async def start_all_target_emulators(settings: Settings, host: str | None = None, **faults: Any) -> list[web.AppRunner]:
    """Every configured target that has an emulator, on the port of its base_url (bound to
    `host` when given, else to the base_url's host), with its api_key as the credential."""
    runners = []
    for name, target in settings.sync_out.targets.items():
        if name not in TARGET_APIS:
            continue
        url = urlparse(target.base_url)
        runners.append(await start_target_emulator(name, host or url.hostname or "127.0.0.1", url.port or 80, target.api_key, **faults))
    return runners


def emulator_url(runner: web.AppRunner) -> str:
    """The base URL a started emulator listens on."""
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


def emulator_state(runner: web.AppRunner) -> EmulatorState:
    """In-process access to an emulator's memory (tests in the same process)."""
    return runner.app[STATE_KEY]
