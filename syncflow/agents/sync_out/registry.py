"""Target name → its client class. With the target's section of target_rules.yaml (its
Transformer) and a TargetSettings entry, that is all a new target needs; the worker, the
routing and the rate limit do not change."""

from __future__ import annotations

from syncflow.agents.sync_out.transform import Transformer
from syncflow.errors import ConfigError
from syncflow.sinks.targets.base import TargetClient
from syncflow.sinks.targets.lessen360 import Lessen360Client
from syncflow.sinks.targets.one import OneClient
from syncflow.streams.settings import Settings

TARGET_CLIENTS: dict[str, type[TargetClient]] = {
    "one": OneClient,
    "lessen360": Lessen360Client,
}


def binding_for(settings: Settings, target: str) -> tuple[TargetClient, Transformer]:
    """The client and transformer of a configured target (refused at start-up if unknown)."""
    if target not in settings.sync_out.targets:
        raise ConfigError(f"target {target!r} is not configured; known: {', '.join(settings.sync_out.targets)}")
    if target not in TARGET_CLIENTS:
        raise ConfigError(f"no client class for target {target!r}; known: {', '.join(TARGET_CLIENTS)}")
    client = TARGET_CLIENTS[target](settings.sync_out.targets[target])
    return client, Transformer.from_file(settings.sync_out.rules_file, target)
