"""Emulated source systems (Yardi, RealPage, Insight, Lessen360) as real aiohttp servers
over one generated world; see docs/sources.md."""

from syncflow.emulators.sources.base import Faults
from syncflow.emulators.sources.runner import (
    RunningEmulator,
    serve_all_source_emulators,
    start_all_source_emulators,
    start_source_emulator,
)
from syncflow.emulators.sources.world import World, apply_changes, generate_world

__all__ = [
    "Faults",
    "RunningEmulator",
    "World",
    "apply_changes",
    "generate_world",
    "serve_all_source_emulators",
    "start_all_source_emulators",
    "start_source_emulator",
]
