"""The cluster manifests, Prometheus and Grafana files agree with the code: a Deployment per
role with probes on its port, only SYNCFLOW_* names the Settings model knows, KEDA scalers on
real consumer groups and topics, and dashboards/alerts using only declared metric names."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from syncflow.agents.rules.engine import RulesEngine
from syncflow.agents.sync_out.registry import TARGETS
from syncflow.agents.sync_out.transform import Transformer
from syncflow.cli import app as cli_app
from syncflow.connectors.yardi import ENDPOINT as YARDI_ENDPOINT
from syncflow.ops.status import consumer_groups
from syncflow.sinks.targets.base import join_url
from syncflow.streams.metrics import METRIC_NAMES, exposed_name_to_metric
from syncflow.settings import REPO_ROOT, Settings
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


def cluster_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a pod gets them: every ConfigMap and Secret value as an environment variable."""
    for obj in k8s_objects():
        for name, value in ((obj.get("data") or {}) | (obj.get("stringData") or {})).items():
            if obj["kind"] in {"ConfigMap", "Secret"}:
                monkeypatch.setenv(name, value)
    return Settings()


def test_the_configmap_and_secret_values_load_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = cluster_settings(monkeypatch)
    assert loaded.sync_out.targets["one"].base_url == "https://one.example.com"
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


# -- hardening: who a pod runs as, what it may write, what it may use, which image -----------

WORKLOADS = {"Deployment", "Job", "CronJob"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def workloads(objects: list[dict[str, Any]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every object that runs containers."""
    for obj in objects if objects is not None else k8s_objects():
        if obj["kind"] in WORKLOADS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj)


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def security_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every container that may run as root, escalate, keep a capability or write its root
    filesystem, and every pod without an emptyDir on /tmp for what it must write."""
    problems = []
    for name, spec in workloads(objects):
        pod_sc = spec.get("securityContext") or {}
        emptydirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in all_containers(spec):
            sc = c.get("securityContext") or {}
            where = f"{name}/{c['name']}"
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser", 1)) == 0:
                problems.append(f"{where}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"] or (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: capabilities are not drop [ALL]")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if len(tmp) != 1 or tmp[0]["name"] not in emptydirs:
                problems.append(f"{where}: no emptyDir on /tmp")
    return problems


def image_problems(objects: list[dict[str, Any]], kustomization: dict[str, Any]) -> list[str]:
    """Images without a pinned tag: none, :latest, or a kustomize override to latest."""
    problems = []
    for name, spec in workloads(objects):
        for c in all_containers(spec):
            image = c.get("image", "")
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if "@sha256:" not in image and tag in ("", "latest"):
                problems.append(f"{name}/{c['name']}: image {image!r} is not pinned")
    for override in kustomization.get("images", []):
        if "digest" not in override and str(override.get("newTag", "")) in ("", "latest"):
            problems.append(f"kustomization images {override['name']}: newTag {override.get('newTag')!r} is not pinned")
    return problems


def resource_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for name, spec in workloads(objects):
        for c in all_containers(spec):
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind) or {})
                if missing:
                    problems.append(f"{name}/{c['name']}: no {kind} for {', '.join(sorted(missing))}")
    return problems


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def test_every_pod_runs_unprivileged_on_a_read_only_root_with_tmp_writable() -> None:
    objects = k8s_objects()
    assert sum(1 for _ in workloads(objects)) == len(role_ports()) + 2  # the roles, topics Job, purge CronJob
    assert security_problems(objects) == []


def test_every_image_is_pinned_to_the_release() -> None:
    assert image_problems(k8s_objects(), kustomization()) == []
    version = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    images = {c["image"] for _, spec in workloads() for c in all_containers(spec)}
    assert images == {f"syncflow:{version[1]}"}
    assert [str(i["newTag"]) for i in kustomization()["images"]] == [version[1]]


def test_every_container_has_requests_and_limits() -> None:
    assert resource_problems(k8s_objects()) == []


def _first_container(objects: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    return next(all_containers(spec)[0] for name, spec in workloads(objects) if name.startswith(kind))


def _first_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(spec for _, spec in workloads(objects))


BREAKAGES: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "root": lambda o: [_first_pod(o)["securityContext"].update(runAsNonRoot=False), _first_pod(o)["securityContext"].update(runAsUser=0)],
    "escalation": lambda o: _first_container(o)["securityContext"].update(allowPrivilegeEscalation=True),
    "writable-root": lambda o: _first_container(o)["securityContext"].pop("readOnlyRootFilesystem"),
    "capabilities": lambda o: _first_container(o)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
    "privileged": lambda o: _first_container(o, "CronJob")["securityContext"].update(privileged=True),
    "no-tmp": lambda o: _first_container(o, "Job")["volumeMounts"].clear(),
    "latest": lambda o: _first_container(o, "CronJob").update(image="syncflow:latest"),
    "untagged": lambda o: _first_container(o).update(image="syncflow"),
    "no-cpu-limit": lambda o: _first_container(o)["resources"]["limits"].pop("cpu"),
    "no-requests": lambda o: _first_container(o, "Job")["resources"].pop("requests"),
    "init-container": lambda o: _first_pod(o).setdefault("initContainers", []).append({"name": "init", "image": "busybox:latest"}),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_hardening_check_catches_its_breakage(breakage: str) -> None:
    objects = copy.deepcopy(k8s_objects())
    BREAKAGES[breakage](objects)
    assert security_problems(objects) + image_problems(objects, kustomization()) + resource_problems(objects) != []
    assert image_problems([], {"images": [{"name": "syncflow", "newTag": "latest"}]}) != []


def _workload_running(command: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["kind"], o) for o in k8s_objects() if o["kind"] in WORKLOADS
            and any(c.get("command") == command for c in all_containers(pod_spec(o)))]


def _cli_knows(command: list[str]) -> bool:
    """`syncflow <args> --help` exits 0: the command exists with these options."""
    from typer.testing import CliRunner

    assert command[0] == "syncflow"
    return CliRunner().invoke(cli_app, [*command[1:], "--help"]).exit_code == 0


def test_a_job_creates_the_topics_and_a_cronjob_purges_the_raw_store() -> None:
    [(kind, topics)] = _workload_running(["syncflow", "topics", "create"])
    assert kind == "Job" and pod_spec(topics)["restartPolicy"] == "OnFailure"
    assert topics["spec"].get("ttlSecondsAfterFinished")  # so that a re-apply with a new tag can recreate it
    [(kind, purge)] = _workload_running(["syncflow", "raw", "purge", "--json"])
    assert kind == "CronJob" and purge["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(purge["spec"]["schedule"].split()) == 5
    for obj in (topics, purge):
        [container] = pod_spec(obj)["containers"]
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"syncflow-config", "syncflow-secrets"}
        assert _cli_knows(container["command"])
    assert not _cli_knows(["syncflow", "raw", "purge", "--no-such-option"])


def test_the_rules_files_are_mounted_where_the_settings_point(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = cluster_settings(monkeypatch)
    [generator] = [g for g in kustomization()["configMapGenerator"] if g["name"] == "syncflow-rules"]
    files = {PurePosixPath(f).name: K8S / f for f in generator["files"]}
    deployments = of_kind("Deployment")
    for role, rules_file in [("sync-in", loaded.sync_in.rules_file)] + [
            (f"sync-out-{t}", loaded.sync_out.rules_file) for t in loaded.sync_out.targets]:
        spec = deployments[role]["spec"]["template"]["spec"]
        volumes = {v["name"] for v in spec["volumes"] if (v.get("configMap") or {}).get("name") == "syncflow-rules"}
        [container] = spec["containers"]
        mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes]
        assert str(PurePosixPath(rules_file).parent) in mounts, (role, rules_file)
        assert PurePosixPath(rules_file).name in files, (role, rules_file)
    # the mounted files are the ones the code loads, and they load
    assert RulesEngine.from_file(files[PurePosixPath(loaded.sync_in.rules_file).name])
    for target in loaded.sync_out.targets:
        assert Transformer.from_file(files[PurePosixPath(loaded.sync_out.rules_file).name], TARGETS[target][1])


# The API paths each client adds to its base URL (targets: sinks/targets/, sources: connectors/).
TARGET_PATHS = {"one": "/api/v2/locations/x", "lessen360": "/v1/batch"}
SOURCE_PATHS = {"yardi": YARDI_ENDPOINT, "realpage": "/api/v1/properties", "insight": "/v2/changes", "lessen360": "/api/locations"}


def doubled_segment(base_url: str, path: str) -> bool:
    """A base URL that already ends with the API's own first segment (".../api" + "/api/v2")."""
    segments = [s for s in join_url(base_url, path).split("://", 1)[1].split("/")[1:] if s]
    return any(a == b for a, b in zip(segments, segments[1:]))


def test_the_base_urls_are_https_and_do_not_repeat_the_apis_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = cluster_settings(monkeypatch)
    urls = [(t.base_url, TARGET_PATHS[n]) for n, t in loaded.sync_out.targets.items()]
    urls += [(s.base_url, SOURCE_PATHS[n]) for n, s in loaded.connectors.sources.items()]
    assert len(urls) == 6
    for base_url, path in urls:
        assert base_url.startswith("https://"), base_url
        assert not doubled_segment(base_url, path), (base_url, path)
    assert doubled_segment("https://one.example.com/api", TARGET_PATHS["one"])
    assert not doubled_segment("https://gw.example.com/one", TARGET_PATHS["one"])


def test_the_image_runs_as_a_non_root_user_and_serves_on_all_interfaces() -> None:
    lines = [l.strip() for l in (REPO_ROOT / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    last_from = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    users = [l.split(None, 1)[1] for l in lines[last_from:] if l.upper().startswith("USER ")]
    assert users, "no USER after the last FROM: the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root, so runAsNonRoot can verify it"
    env = " ".join(l for l in lines if l.upper().startswith("ENV "))
    assert re.search(r"\bSYNCFLOW_HTTP_HOST=0\.0\.0\.0\b", env)
    pods = [spec for _, spec in workloads()]
    assert all(spec["securityContext"]["runAsUser"] == int(uid) for spec in pods)
