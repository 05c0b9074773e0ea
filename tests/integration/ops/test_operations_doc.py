"""docs/operations.md and the code cannot drift apart silently: every metric the doc's table
names is the set the code declares, every other `syncflow_*` name the doc mentions is one the
code exports, and each role registers exactly the readiness checks the doc lists for it
(the roles are built as their entry points build them; nothing is started)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syncflow.connectors.observe import worker_observer
from syncflow.roles.sync_in import build_sync_in, make_app
from syncflow.roles.sync_out import add_observability, build_worker
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.health import HealthCheck
from syncflow.streams.metrics import METRIC_NAMES

pytestmark = pytest.mark.integration
DOC = (REPO_ROOT / "docs" / "operations.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    """The body rows of the first table after `heading`, as cell lists."""
    rows: list[list[str]] = []
    for line in DOC.split(heading, 1)[1].splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) - set("-: ") and cells[0] not in ("metric", "role"):
            rows.append(cells)
    assert rows, f"no table under {heading!r}"
    return rows


def test_the_metric_table_is_what_the_code_declares() -> None:
    documented = {re.sub(r"`", "", row[0]) for row in table_rows("## Metrics")}
    assert documented == set(METRIC_NAMES)


def test_every_metric_name_the_doc_mentions_is_exported_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in Path(REPO_ROOT / "syncflow").rglob("*.py"))
    suffixes = ("_total", "_bucket", "_sum", "_count", "_created")
    mentioned = {name for name in re.findall(r"\bsyncflow_[a-z_]+\b", DOC)}
    unknown = {n for n in mentioned if f'"{n}"' not in source
               and not any(n.endswith(s) and f'"{n[: -len(s)]}"' in source for s in suffixes)}
    assert unknown == set(), f"docs/operations.md names metrics no code exports: {sorted(unknown)}"


def documented_checks() -> dict[str, list[str]]:
    return {row[0]: [c.strip(" `") for c in row[1].split(",")] for row in table_rows("### Readiness checks by role")}


def test_each_role_registers_the_checks_the_doc_lists(settings: Settings, tmp_path: Path) -> None:
    doc = documented_checks()
    assert set(doc) == {"sync-in", "sync-out", "connector", "ingest"}

    runtime = build_sync_in(settings)
    try:
        make_app(settings, runtime, datadir=tmp_path / "faust")
        assert runtime.health.names() == doc["sync-in"]
    finally:
        runtime.close()

    health = HealthCheck(settings.ops)
    worker = build_worker(settings, "one", health=health)
    try:
        add_observability(settings, worker, CollectorRegistry(), health)
        assert health.names() == doc["sync-out"]
    finally:
        worker.processor.state.close()

    observer = worker_observer(settings)  # what the connector and ingest processes serve
    assert observer.health is not None
    assert observer.health.names() == doc["connector"] == doc["ingest"]
