"""docker-compose.yml: `docker compose config` accepts it where the compose plugin is present;
everywhere, it parses and its services are wired to real images, ports and settings."""

from __future__ import annotations

import shutil
import typing
import subprocess

import yaml

from syncflow.streams.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"


def _compose_plugin_present() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_docker_compose_config_accepts_the_file_where_available() -> None:
    if not _compose_plugin_present():
        # No compose plugin here: the structural checks below are the whole test.
        assert _services()
        return
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


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
