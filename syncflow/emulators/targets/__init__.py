"""Emulated target systems (ONE, Lessen360): real aiohttp servers with each target's format,
auth, idempotency keys, dependency checks and injectable faults, for tests, demo and bench."""

from syncflow.emulators.targets.app import (
    TARGET_APIS,
    build_app,
    emulator_state,
    emulator_url,
    start_all_target_emulators,
    start_target_emulator,
)
from syncflow.emulators.targets.core import EmulatorState, Faults, OAuth2Client

__all__ = ["TARGET_APIS", "EmulatorState", "Faults", "OAuth2Client", "build_app", "emulator_state", "emulator_url", "start_all_target_emulators", "start_target_emulator"]
