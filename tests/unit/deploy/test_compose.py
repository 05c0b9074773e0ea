"""docker-compose.yml: on every machine it follows the Compose Specification's JSON schema
(vendored in data/, so no network or Docker is needed), and `docker compose config` accepts
it where the compose plugin is present; its services are wired to real images, ports and
settings. A deliberately broken copy must be refused, so the check itself can fail."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import typing
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from syncflow.streams.settings import REPO_ROOT, Settings

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
    roles = {name: s for name, s in services.items() if s.get("image") == "syncflow:local"}
    commands = {" ".join(s["command"]) for s in roles.values()}
    for role in ("run sync-in", "run sync-out --target one", "run sync-out --target lessen360", "run ingest"):
        assert role in commands
    for source in ("yardi", "realpage", "insight", "lessen360"):
        assert f"run connector --source {source}" in commands
    for service in roles.values():
        for name in service["environment"]:
            assert _setting_exists(name), name


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
