"""Run source emulators in-process: one for a test, or all four over one world for the
demo (`syncflow sources emulate`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from aiohttp import web

from syncflow.emulators.sources.base import EmulatorState, Faults
from syncflow.emulators.sources.insight import make_insight_app
from syncflow.emulators.sources.lessen360 import make_lessen360_app
from syncflow.emulators.sources.realpage import make_realpage_app
from syncflow.emulators.sources.world import World, generate_world
from syncflow.emulators.sources.yardi import make_yardi_app
from syncflow.settings import Settings

APP_FACTORIES: dict[str, Callable[[EmulatorState], web.Application]] = {
    "yardi": make_yardi_app,
    "realpage": make_realpage_app,
    "insight": make_insight_app,
    "lessen360": make_lessen360_app,
}


@dataclass
class RunningEmulator:
    """A started emulator: its base URL, its state (world, faults) and how to stop it."""

    source: str
    url: str
    state: EmulatorState
    runner: web.AppRunner

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_source_emulator(source: str, host: str, port: int, world: World, *, api_key: str = "local-key",
                                faults: Faults | None = None, seed: int = 7) -> RunningEmulator:
    """Serve `source`'s slice of `world` on host:port (port 0 picks a free port)."""
    state = EmulatorState(source, world, api_key, faults or Faults(), random.Random(seed))
    runner = web.AppRunner(APP_FACTORIES[source](state), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return RunningEmulator(source, f"http://{host}:{bound_port}", state, runner)


async def start_all_source_emulators(settings: Settings, *, seed: int | None = None, volume: int | None = None,
                                     host: str | None = None,
                                     invalid_rate: float | None = None) -> list[RunningEmulator]:
    """All four emulators over one world, on the ports of settings.connectors.sources."""
    c = settings.connectors
    world = generate_world(c.emulator_seed if seed is None else seed, c.emulator_volume if volume is None else volume,
                           c.emulator_invalid_rate if invalid_rate is None else invalid_rate)
    running = []
    for source, src in c.sources.items():
        port = urlparse(src.base_url).port or 80
        running.append(await start_source_emulator(source, host or settings.http_host, port, world,
                                                   api_key=src.api_key, seed=world.seed + len(running)))
    return running


async def serve_all_source_emulators(settings: Settings, **kwargs: object) -> None:
    """Run the four emulators until cancelled."""
    running = await start_all_source_emulators(settings, **kwargs)  # type: ignore[arg-type]
    try:
        await asyncio.Event().wait()
    finally:
        for emulator in running:
            await emulator.close()
