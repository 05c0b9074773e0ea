"""Strict setting names (environment and env file, nested names and JSON values included),
and `syncflow config check`: secrets masked, non-zero exit on an invalid configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncflow.cli import app
from syncflow.errors import ConfigError
from syncflow.settings import Settings


@pytest.mark.parametrize(("name", "nearest"), [
    ("SYNCFLOW_KAFKA_BOOTSTRAP_SERVER", "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS"),
    ("SYNCFLOW_SYNC_IN__BATCH_SIZ", "SYNCFLOW_SYNC_IN__BATCH_SIZE"),
    ("SYNCFLOW_SYNC_IN_BATCH_SIZE", "SYNCFLOW_SYNC_IN__BATCH_SIZE"),  # one underscore for the nesting
    ("SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUT", "SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUTE"),
    ("syncflow_ops__max_redrive", "SYNCFLOW_OPS__MAX_REDRIVES"),
])
def test_a_misspelt_environment_variable_is_refused_naming_the_nearest_valid_one(
        monkeypatch: pytest.MonkeyPatch, name: str, nearest: str) -> None:
    monkeypatch.setenv(name, "5")
    with pytest.raises(ConfigError) as raised:
        Settings.load()
    assert f"unknown setting {name}" in str(raised.value)
    assert f"did you mean {nearest}?" in str(raised.value)


def test_a_misspelt_key_inside_a_json_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCFLOW_CONNECTORS__SOURCES", json.dumps({"yardi": {"base_ur": "http://x"}}))
    with pytest.raises(ConfigError, match="did you mean SYNCFLOW_CONNECTORS__SOURCES__YARDI__BASE_URL"):
        Settings.load()


def test_a_sub_setting_of_a_plain_value_and_a_removed_setting_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCFLOW_LOG_JSON__X", "1")
    with pytest.raises(ConfigError, match="SYNCFLOW_LOG_JSON takes no sub-settings"):
        Settings.load()
    monkeypatch.delenv("SYNCFLOW_LOG_JSON__X")
    monkeypatch.setenv("SYNCFLOW_CONNECTORS__CURSOR_DIR", "/var/lib/cursors")
    with pytest.raises(ConfigError, match="no longer a setting: connector cursors are kept in the common database"):
        Settings.load()


def test_unknown_keys_of_the_env_file_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "syncflow.env"
    env_file.write_text("SYNCFLOW_LOG_LEVEL=DEBUG\nSYNCFLOW_SYNC_OUT__BATCH_SIZ=10\nKAFKA_BOOTSTRAP_SERVERS=k:9092\n")
    monkeypatch.setenv("SYNCFLOW_ENV_FILE", str(env_file))
    with pytest.raises(ConfigError) as raised:
        Settings.load()
    message = str(raised.value)
    assert f"{env_file}: unknown setting SYNCFLOW_SYNC_OUT__BATCH_SIZ; did you mean SYNCFLOW_SYNC_OUT__BATCH_SIZE?" in message
    assert "KAFKA_BOOTSTRAP_SERVERS is not a setting" in message and "did you mean SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS" in message

    env_file.write_text("SYNCFLOW_LOG_LEVEL=DEBUG\nSYNCFLOW_SYNC_OUT__BATCH_SIZE=10\n")
    loaded = Settings.load()
    assert loaded.log_level == "DEBUG" and loaded.sync_out.batch_size == 10


def test_valid_names_and_the_tooling_variables_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"SYNCFLOW_SYNC_OUT__TARGETS__ONE__RATE_PER_MINUTE": "120",
                        "SYNCFLOW_INGEST__API_KEYS__YARDI": "k", "SYNCFLOW_HTTP_HOST": "0.0.0.0",
                        "SYNCFLOW_CONNECTORS": json.dumps({"sources": {"yardi": {"page_size": 7}}}),
                        "SYNCFLOW_STACK_DIR": str(tmp_path), "SYNCFLOW_PYTHON": "python3",
                        "SYNCFLOW_LOCAL_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081"}.items():
        monkeypatch.setenv(name, value)
    loaded = Settings.load()
    assert loaded.sync_out.targets["one"].rate_per_minute == 120 and loaded.http_host == "0.0.0.0"
    assert loaded.connectors.sources["yardi"].page_size == 7


SECRETS = {
    "SYNCFLOW_DATABASE_URL": ("postgresql+psycopg2://svc:pg-Secret-1@db:5432/syncflow",
                              "postgresql+psycopg2://svc:***@db:5432/syncflow"),
    "SYNCFLOW_MONGO_URL": ("mongodb://svc:mongo-Secret-2@mongo:27017/?authSource=admin",
                           "mongodb://svc:***@mongo:27017/?authSource=admin"),
    "SYNCFLOW_SYNC_OUT__TARGETS__ONE__API_KEY": ("one-Secret-3", "***"),
    "SYNCFLOW_CONNECTORS__SOURCES__YARDI__API_KEY": ("yardi-Secret-4", "***"),
    "SYNCFLOW_INGEST__API_KEYS__REALPAGE": ("ingest-Secret-5", "***"),
    "SYNCFLOW_KAFKA_SECURITY__PASSWORD": ("kafka-Secret-6", "***"),
    "SYNCFLOW_SYNC_OUT__TARGETS__LESSEN360__OAUTH2_CLIENT_SECRET": ("oauth-Secret-7", "***"),
}


def test_config_check_prints_the_configuration_with_every_secret_masked(tmp_path: Path) -> None:
    env = {name: value for name, (value, _) in SECRETS.items()}
    env |= {"SYNCFLOW_SYNC_OUT__TARGETS__LESSEN360__OAUTH2_TOKEN_URL": "https://auth.example.com/token",
            "SYNCFLOW_SYNC_OUT__TARGETS__LESSEN360__OAUTH2_CLIENT_ID": "syncflow-client",
            "SYNCFLOW_SYNC_IN__BATCH_SIZE": "321"}
    result = CliRunner().invoke(app, ["config", "check"], env=env)
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    for name, (value, shown) in SECRETS.items():
        assert lines[name] == shown
    assert lines["SYNCFLOW_SYNC_IN__BATCH_SIZE"] == "321"  # what is in effect, not the default
    assert lines["SYNCFLOW_SYNC_OUT__TARGETS__LESSEN360__OAUTH2_TOKEN_URL"] == "https://auth.example.com/token"
    assert lines["SYNCFLOW_SYNC_OUT__TARGETS__LESSEN360__OAUTH2_CLIENT_ID"] == "syncflow-client"
    assert "Secret-" not in result.output

    as_json = CliRunner().invoke(app, ["config", "check", "--json"], env=env)
    assert as_json.exit_code == 0 and "Secret-" not in as_json.output
    assert json.loads(as_json.stdout)["kafka_security"]["password"] == "***"


def test_config_check_exits_non_zero_on_a_bad_value_without_echoing_it() -> None:
    bad = CliRunner().invoke(app, ["config", "check"], env={"SYNCFLOW_SYNC_IN__BATCH_SIZE": "lots"})
    assert bad.exit_code == 1
    assert "SYNCFLOW_SYNC_IN__BATCH_SIZE: Input should be a valid integer" in bad.output

    url = "ftp://svc:url-Secret-8@one.example.com/api"  # a base URL must be http(s)
    refused = CliRunner().invoke(app, ["config", "check"], env={"SYNCFLOW_SYNC_OUT__TARGETS__ONE__BASE_URL": url})
    assert refused.exit_code == 1 and "SYNCFLOW_SYNC_OUT__TARGETS__ONE__BASE_URL" in refused.output
    assert "Secret-" not in refused.output

    misspelt = CliRunner().invoke(app, ["config", "check"], env={"SYNCFLOW_SYNC_IN__BATCH_SIZ": "10"})
    assert misspelt.exit_code == 1 and "did you mean SYNCFLOW_SYNC_IN__BATCH_SIZE?" in misspelt.output

    schema = CliRunner().invoke(app, ["config", "check"], env={"SYNCFLOW_DATABASE_SCHEMA": "public; drop"})
    assert schema.exit_code == 1 and "not a plain SQL identifier" in schema.output
