"""docker-compose.yml: on every machine it follows the Compose Specification's JSON schema
(vendored in data/, so no network or Docker is needed), and `docker compose config` accepts
it where the compose plugin is present; its services are wired to real images, ports and
settings. A deliberately broken copy must be refused, so the check itself can fail."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from syncflow.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"  # see data/README.md


def _compose_plugin_present() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _schema_errors(document: object) -> list[str]:
    """Every place where `document` breaks the Compose Specification schema."""
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def _compose_config_errors(path: Path) -> str | None:
    """`docker compose config`'s complaint about the file, None when it accepts it."""
    result = subprocess.run(["docker", "compose", "-f", str(path), "config", "-q"], capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr or f"exit {result.returncode}"


def test_the_vendored_schema_is_the_compose_specification_unchanged() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_the_compose_file_follows_the_compose_specification() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    assert _schema_errors(document) == []
    assert len(document["services"]) >= 10  # the backing services and every syncflow role
    if _compose_plugin_present():
        assert _compose_config_errors(COMPOSE) is None


def _unknown_service_key(doc: dict) -> None:
    doc["services"]["kafka"]["imagee"] = doc["services"]["kafka"].pop("image")


def _ports_as_a_mapping(doc: dict) -> None:
    doc["services"]["postgres"]["ports"] = {"5432": "5432"}


def _unknown_depends_on_condition(doc: dict) -> None:
    doc["services"]["sync-in"]["depends_on"] = {"kafka": {"condition": "service_ready"}}


def _command_as_a_mapping(doc: dict) -> None:
    doc["services"]["topics"]["command"] = {"topics": "create"}


def _bad_service_name(doc: dict) -> None:
    doc["services"]["sync out"] = doc["services"].pop("sync-out-one")


def _unknown_top_level_key(doc: dict) -> None:
    doc["service"] = doc.pop("services")


BREAKAGES: list[Callable[[dict], None]] = [
    _unknown_service_key, _ports_as_a_mapping, _unknown_depends_on_condition,
    _command_as_a_mapping, _bad_service_name, _unknown_top_level_key,
]  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.__name__.strip("_"))
def test_a_broken_copy_of_the_compose_file_is_refused(breakage: Callable[[dict], None], tmp_path: Path) -> None:
    broken = copy.deepcopy(yaml.safe_load(COMPOSE.read_text()))
    breakage(broken)
    assert _schema_errors(broken) != []
    if _compose_plugin_present():
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(broken))
        assert _compose_config_errors(path) is not None


def test_backing_services_use_real_images_and_standard_ports() -> None:
    services = _services()
    expected = {"kafka": ("apache/kafka:", "9092"), "postgres": ("postgres:", "5432"), "mongo": ("mongo:", "27017")}
    for name, (image_prefix, port) in expected.items():
        assert services[name]["image"].startswith(image_prefix)
        assert any(str(p).endswith(f":{port}") for p in services[name]["ports"])
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_role_runs_the_cli_and_uses_known_settings() -> None:
    services = _services()
    roles = {name: s for name, s in services.items() if s.get("image") == "syncflow:local" and "command" in s}
    commands = {" ".join(s["command"]) for s in roles.values()}
    for role in ("run sync-in", "run sync-out --target one", "run sync-out --target lessen360", "run ingest"):
        assert role in commands
    for source in ("yardi", "realpage", "insight", "lessen360"):
        assert f"run connector --source {source}" in commands
    for service in roles.values():
        for name in service["environment"]:
            assert name == "SYNCFLOW_ENV_FILE" or _setting_exists(name), name  # the env file Settings.load reads


def _setting_exists(env_name: str) -> bool:
    """SYNCFLOW_A__B__C names a field path a.b.c of Settings (a dict field takes a key part)."""
    assert env_name.startswith("SYNCFLOW_")
    parts = env_name[len("SYNCFLOW_"):].lower().split("__")
    model: object = Settings
    while parts:
        fields = getattr(model, "model_fields", None)
        if fields is None or parts[0] not in fields:
            return False
        annotation = fields[parts.pop(0)].annotation
        if typing.get_origin(annotation) is dict:
            if not parts:
                return True
            parts.pop(0)  # the dict key, e.g. a target name
            annotation = typing.get_args(annotation)[1]
        model = annotation
    return True


# -- hardening: loopback ports, no well-known credentials ------------------------------------

INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR} with `env` (empty: the defaults)."""
    env = env or {}
    return INTERPOLATION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def _published_host_ips(service: dict) -> list[str]:
    """The host address of each published port ("" where it is published on every interface)."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append(_interpolate(str(port.get("host_ip", ""))))
            continue
        parts = _interpolate(str(port)).split(":")
        out.append(parts[0] if len(parts) == 3 else "")
    return out


def test_every_published_port_is_bound_to_loopback_by_default() -> None:
    published = {name: _published_host_ips(s) for name, s in _services().items() if s.get("ports")}
    assert {"kafka", "postgres", "mongo", "ingest", "grafana", "prometheus"} <= set(published)
    assert {name: ips for name, ips in published.items() if set(ips) != {"127.0.0.1"}} == {}
    # and the override publishes them elsewhere when asked
    kafka = _services()["kafka"]["ports"][0]
    assert _interpolate(kafka, {"SYNCFLOW_PUBLISH_HOST": "0.0.0.0"}).startswith("0.0.0.0:")


def test_a_port_published_on_every_interface_would_be_caught() -> None:
    assert _published_host_ips({"ports": ["5432:5432"]}) == [""]
    assert _published_host_ips({"ports": [{"target": 5432, "published": 5432}]}) == [""]
    assert _published_host_ips({"ports": ["127.0.0.1:5432:5432"]}) == ["127.0.0.1"]


CREDENTIAL_NAME = re.compile(r"API_KEY|PASSWORD$|SECRET|TOKEN", re.IGNORECASE)
CREDENTIAL_IN_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")


def _literal_credentials(services: dict) -> list[str]:
    """Environment entries that give a credential a value written in the file (a password in
    a URL included); `${VAR:?...}` (required from the caller) is not one."""
    found = []
    for name, service in services.items():
        env = service.get("environment") or {}
        pairs = env.items() if isinstance(env, dict) else (tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env)
        for key, value in pairs:
            value = "" if value is None else str(value)
            if value.startswith("${") and ":?" in value:
                continue
            if (CREDENTIAL_NAME.search(key) and not key.endswith("_FILE")) or CREDENTIAL_IN_URL.search(value):
                found.append(f"{name}: {key}")
    return found


def test_no_credential_is_written_in_the_compose_file() -> None:
    assert _literal_credentials(_services()) == []
    assert _literal_credentials({"x": {"environment": {"POSTGRES_PASSWORD": "syncflow"}}}) == ["x: POSTGRES_PASSWORD"]
    assert _literal_credentials({"x": {"environment": {"SYNCFLOW_DATABASE_URL": "postgresql://u:pw@db/x"}}}) != []
    assert _literal_credentials({"x": {"environment": {"SYNCFLOW_SYNC_OUT__TARGETS__ONE__API_KEY": "${K:?set K}"}}}) == []


def _run_keys_script(keys_dir: Path) -> None:
    keys = _services()["keys"]
    python, flag, script = keys["entrypoint"]
    assert (python, flag) == ("python", "-c")
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "KEYS_DIR": str(keys_dir)}, check=True)


def test_every_role_reads_the_generated_credentials_and_none_is_a_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    keys = services["keys"]
    assert keys["restart"] == "no" and keys["volumes"] == ["keys:/keys"]
    for name, service in services.items():
        if service.get("image") == "syncflow:local" and name != "keys":
            assert "keys:/keys:ro" in service["volumes"], name
            assert service["environment"]["SYNCFLOW_ENV_FILE"] == "/keys/syncflow.env", name
            assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}, name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/keys/postgres-password"
    assert services["mongo"]["environment"]["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/keys/mongo-password"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/keys/grafana-password"

    _run_keys_script(tmp_path)
    first = (tmp_path / "syncflow.env").read_text()
    _run_keys_script(tmp_path)  # generated once, then kept
    assert (tmp_path / "syncflow.env").read_text() == first
    defaults = Settings()
    for name, value in services["sync-in"]["environment"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SYNCFLOW_ENV_FILE", str(tmp_path / "syncflow.env"))
    monkeypatch.setenv("SYNCFLOW_STACK_DIR", str(tmp_path / "no-stack"))
    loaded = Settings.load()
    pg_password = (tmp_path / "postgres-password").read_text()
    mongo_password = (tmp_path / "mongo-password").read_text()
    assert loaded.database_url == f"postgresql+psycopg2://syncflow:{pg_password}@postgres:5432/syncflow"
    assert f"syncflow:{mongo_password}@mongo:27017" in loaded.mongo_url
    generated = [t.api_key for t in loaded.sync_out.targets.values()] + [s.api_key for s in loaded.connectors.sources.values()]
    generated += list(loaded.ingest.api_keys.values())
    known = {t.api_key for t in defaults.sync_out.targets.values()} | {s.api_key for s in defaults.connectors.sources.values()}
    known |= set(defaults.ingest.api_keys.values()) | {"syncflow", "CHANGE-ME", ""}
    assert len(generated) == 10 and len(set(generated)) == 10 and not set(generated) & known
    assert set(loaded.ingest.api_keys) == set(defaults.ingest.api_keys)
    assert all(len(k) >= 24 for k in generated + [pg_password, mongo_password])
