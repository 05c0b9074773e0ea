"""The cluster manifests, Prometheus and Grafana files agree with the code: a Deployment per
role with probes on its port, only SYNCFLOW_* names the Settings model knows, KEDA scalers on
real consumer groups and topics, and dashboards/alerts using only declared metric names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from syncflow.ops.status import consumer_groups
from syncflow.streams.metrics import METRIC_NAMES, exposed_name_to_metric
from syncflow.streams.settings import REPO_ROOT, Settings
from syncflow.streams.topics import SOURCES, catalogue

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS = Settings()


def role_ports() -> dict[str, int]:
    """Every role and the port its web server (metrics, health, ready) listens on."""
    ports = {"sync-in": SETTINGS.sync_in.web_port, "ingest": SETTINGS.ingest.port}
    ports |= {f"sync-out-{t}": SETTINGS.sync_out.web_port for t in SETTINGS.sync_out.targets}
    ports |= {f"connector-{s}": SETTINGS.ops.connector_web_port for s in SOURCES}
    return ports


def role_command(role: str) -> list[str]:
    """`syncflow run <role> ...` as docker-compose.yml runs it."""
    if role.startswith("sync-out-"):
        return ["syncflow", "run", "sync-out", "--target", role.removeprefix("sync-out-")]
    if role.startswith("connector-"):
        return ["syncflow", "run", "connector", "--source", role.removeprefix("connector-")]
    return ["syncflow", "run", role]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [obj for name in kustomization["resources"] for obj in load_all(K8S / name)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def setting_exists(env_name: str, model: type[BaseModel] = Settings) -> bool:
    """SYNCFLOW_A__B__C -> field a, then b inside it...; dict fields take any key as a step."""
    assert env_name.startswith("SYNCFLOW_")
    return _walk(env_name[len("SYNCFLOW_"):].lower().split("__"), model)


def _walk(parts: list[str], annotation: Any) -> bool:
    if not parts:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(parts[0])
        return field is not None and _walk(parts[1:], field.annotation)
    if get_origin(annotation) is dict:
        return _walk(parts[1:], get_args(annotation)[1])
    return False  # a plain value has no sub-fields


def test_env_name_walker_is_strict() -> None:
    assert setting_exists("SYNCFLOW_SYNC_OUT__TARGETS__ONE__API_KEY")
    assert setting_exists("SYNCFLOW_OPS__MAX_REDRIVES")
    assert not setting_exists("SYNCFLOW_SYNC_OUT__TARGETS__ONE__NO_SUCH")
    assert not setting_exists("SYNCFLOW_LOG_JSON__X")
    assert not setting_exists("SYNCFLOW_NOPE")


def test_every_role_has_a_deployment_with_probes_on_its_port() -> None:
    deployments = of_kind("Deployment")
    assert set(deployments) == set(role_ports())
    for role, port in role_ports().items():
        [container] = deployments[role]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == role_command(role)
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
        assert {"name": "http", "containerPort": port} in container["ports"]
        annotations = deployments[role]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"syncflow-config", "syncflow-secrets"}


def test_every_syncflow_env_name_exists_in_settings() -> None:
    names: list[str] = []
    for obj in k8s_objects():
        if obj["kind"] in {"ConfigMap", "Secret"}:
            names += list((obj.get("data") or {}) | (obj.get("stringData") or {}))
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                names += [e["name"] for e in container.get("env", [])]
    syncflow_names = [n for n in names if n.startswith("SYNCFLOW_")]
    assert len(syncflow_names) > 10
    unknown = [n for n in syncflow_names if not setting_exists(n)]
    assert unknown == []


def test_the_configmap_and_secret_values_load_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for obj in k8s_objects():
        for name, value in ((obj.get("data") or {}) | (obj.get("stringData") or {})).items():
            if obj["kind"] in {"ConfigMap", "Secret"}:
                monkeypatch.setenv(name, value)
    loaded = Settings()
    assert loaded.sync_out.targets["one"].base_url == "https://one.example.com/api"
    assert loaded.ingest.host == "0.0.0.0" and loaded.log_json


def test_every_scaler_names_a_real_consumer_group_and_topic() -> None:
    groups = consumer_groups(SETTINGS)
    partitions = {spec.name: spec.partitions for spec in catalogue(SETTINGS)}
    deployments = of_kind("Deployment")
    scaled = of_kind("ScaledObject")
    assert {o["spec"]["scaleTargetRef"]["name"] for o in scaled.values()} == {"sync-in"} | {
        f"sync-out-{t}" for t in SETTINGS.sync_out.targets}
    for obj in scaled.values():
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        triggers = obj["spec"]["triggers"]
        assert triggers
        for trigger in triggers:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            assert meta["consumerGroup"] in groups
            assert meta["topic"] in partitions and meta["topic"] in groups[meta["consumerGroup"]]
            assert obj["spec"]["maxReplicaCount"] <= partitions[meta["topic"]]


def test_ingest_has_a_service_on_its_port() -> None:
    service = of_kind("Service")["ingest"]
    assert service["spec"]["ports"][0]["targetPort"] == SETTINGS.ingest.port
    assert service["spec"]["selector"] == of_kind("Deployment")["ingest"]["spec"]["selector"]["matchLabels"]


def test_rules_configmap_files_exist() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (K8S / file).resolve().is_file(), file


METRIC_TOKEN = re.compile(r"\bsyncflow_[a-z0-9_]+")


def used_metrics(texts: list[str]) -> set[str]:
    return {exposed_name_to_metric(m) for text in texts for m in METRIC_TOKEN.findall(text)}


def test_dashboard_uses_only_declared_metric_names_and_covers_them_all() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "syncflow.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all(exprs)
    used = used_metrics(exprs)
    assert used - set(METRIC_NAMES) == set()
    assert set(METRIC_NAMES) - used == set()
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["datasources"][0]["uid"]}


def test_alert_rules_use_only_declared_metric_names() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs and used_metrics(exprs) - set(METRIC_NAMES) == set()


def test_prometheus_scrapes_every_role_in_the_cluster_and_in_compose() -> None:
    cluster = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in cluster["scrape_configs"]} == set(role_ports())
    compose = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    for job in compose["scrape_configs"]:
        [sd] = job["dns_sd_configs"]
        assert sd["names"] == [job["job_name"]] and job["job_name"] in services
        assert sd["port"] == role_ports()[job["job_name"]]
    assert {job["job_name"] for job in compose["scrape_configs"]} == set(role_ports())
