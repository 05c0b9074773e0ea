"""The Prometheus files under deploy/prometheus/ as Prometheus itself reads them: promtool
accepts the alert rules and both scrape configs, and the rule unit tests in alerts_test.yml
pass (each alert fires on a series that should fire it and stays quiet on one that should
not). promtool comes from Debian's `prometheus` package, installed by `make setup`; without
it these tests fail, they do not skip. A deliberately broken copy must be refused, so the
check itself can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from syncflow.streams.metrics import FRESHNESS_BUCKETS
from syncflow.settings import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
INSTALL_HINT = ("promtool not found: run `make setup` (it installs Debian's `prometheus` package when "
                "/usr/bin/promtool is missing), or `apt-get update && apt-get install -y prometheus`")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


def run(promtool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(promtool: str) -> None:
    result = run(promtool, "test", "rules", PROMETHEUS / "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for group in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
              for t in group.get("alert_rule_test", [])}
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts - tested == set(), "every alert has a unit test"


def test_broken_rules_are_refused(promtool: str, tmp_path: Path) -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "sum by (group) (syncflow_consumer_lag > "
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules))
    assert run(promtool, "check", "rules", broken).returncode != 0
    # and a rule unit test that expects the wrong thing fails
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "warning", "group": "sync-out.one"}}]
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    assert run(promtool, "test", "rules", tmp_path / "alerts_test.yml").returncode != 0


def _has_kubernetes_sd(promtool: str, tmp_path: Path) -> bool:
    """Debian builds Prometheus without some service discoveries, Kubernetes among them."""
    probe = tmp_path / "probe.yml"
    probe.write_text(yaml.safe_dump({"scrape_configs": [{"job_name": "p", "kubernetes_sd_configs": [{"role": "pod"}]}]}))
    result = run(promtool, "check", "config", probe)
    return "kubernetes_sd_configs not found" not in result.stdout + result.stderr


def test_promtool_accepts_both_scrape_configs(promtool: str, tmp_path: Path) -> None:
    result = run(promtool, "check", "config", PROMETHEUS / "prometheus.compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr

    cluster = PROMETHEUS / "prometheus.yml"
    if not _has_kubernetes_sd(promtool, tmp_path):
        # Check everything else promtool can (globals, rule_files with the rules they load,
        # relabelling) with pod discovery swapped for an empty static list; the discovery
        # blocks themselves are checked here against what the cluster manifests provide.
        config = yaml.safe_load(cluster.read_text())
        for job in config["scrape_configs"]:
            assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": ["syncflow"]}}]
            job["static_configs"] = [{"targets": []}]
        cluster = tmp_path / "prometheus.yml"
        cluster.write_text(yaml.safe_dump(config))
        for rule_file in config.get("rule_files", []):
            shutil.copy(PROMETHEUS / rule_file, tmp_path / rule_file)
    result = run(promtool, "check", "config", cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr  # the rules it loads were checked too


def test_freshness_slo_bounds_are_histogram_buckets_for_every_priority() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    bounds = [r for g in groups for r in g["rules"] if r.get("record") == "syncflow:freshness_slo:bound_seconds"]
    assert sorted(int(r["labels"]["priority"]) for r in bounds) == list(range(1, 11))
    for r in bounds:
        le = r["labels"]["le"]
        assert "." not in le and float(le) in FRESHNESS_BUCKETS, f"bound {le} is not a bucket of syncflow_freshness_seconds"
        assert r["expr"] == f"vector({le})"
