"""The target registry: a configured target gets its client and transformer; others are refused."""

from __future__ import annotations

import pytest

from syncflow.agents.sync_out.registry import binding_for
from syncflow.errors import ConfigError
from syncflow.sinks.targets import Lessen360TargetClient, OneClient
from syncflow.settings import Settings, SyncOutSettings, TargetSettings


def test_each_configured_target_gets_its_client_and_rules() -> None:
    settings = Settings()
    client, transformer = binding_for(settings, "one")
    assert isinstance(client, OneClient) and transformer.rules["service_request"].resource == "work-orders"
    client, transformer = binding_for(settings, "lessen360")
    assert isinstance(client, Lessen360TargetClient) and transformer.rules["service_request"].resource == "work_orders"


def test_unknown_or_clientless_targets_are_refused() -> None:
    with pytest.raises(ConfigError):
        binding_for(Settings(), "nowhere")
    so = SyncOutSettings(targets={"acme": TargetSettings(base_url="http://127.0.0.1:1")})
    with pytest.raises(ConfigError):
        binding_for(Settings(sync_out=so), "acme")
