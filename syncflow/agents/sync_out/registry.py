"""Target name → (client class, transformer rules section). With a TargetSettings entry, that
is all a new target needs; the worker, the routing and the rate limit do not change."""

from __future__ import annotations

from syncflow.agents.sync_out.transform import Transformer
from syncflow.errors import ConfigError
from syncflow.sinks.targets.base import TargetClient
from syncflow.sinks.targets.lessen360 import Lessen360TargetClient
from syncflow.sinks.targets.one import OneClient
from syncflow.settings import Settings

TARGETS: dict[str, tuple[type[TargetClient], str]] = {
    "one": (OneClient, "one"),
    "lessen360": (Lessen360TargetClient, "lessen360"),
}


def binding_for(settings: Settings, target: str) -> tuple[TargetClient, Transformer]:
    """The client and transformer of a configured target (refused at start-up if unknown)."""
    if target not in settings.sync_out.targets:
        raise ConfigError(f"target {target!r} is not configured; known: {', '.join(settings.sync_out.targets)}")
    if target not in TARGETS:
        raise ConfigError(f"no client class for target {target!r}; known: {', '.join(TARGETS)}")
    client_class, rules_section = TARGETS[target]
    return client_class(settings.sync_out.targets[target]), Transformer.from_file(settings.sync_out.rules_file, rules_section)
