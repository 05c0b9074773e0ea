"""Bulk import of JSON lines, CSV and Yardi XML files onto the real broker, and the
`sources import` command's exit status, progress and rejects file."""

from __future__ import annotations

import csv
import os
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from syncflow.cli.sources import app
from syncflow.connectors.bulk_import import import_file
from syncflow.connectors.schemas import load_schema
from syncflow.connectors.xml_records import record_to_element
from syncflow.emulators.sources import generate_world
from syncflow.emulators.sources.render import render
from syncflow.settings import Settings

from .conftest import latest_by_key, read_topic

pytestmark = pytest.mark.integration

WORLD = generate_world(seed=9, volume=24)


def rendered(source: str, entity_type: str) -> list[dict[str, Any]]:
    return [render(e) for e in WORLD.of(source, entity_type)]


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A record as a flat CSV row: nested records as dotted columns, lists as JSON."""
    out: dict[str, str] = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = json.dumps(v)
        elif v is None:
            out[prefix + k] = ""
        else:
            out[prefix + k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


@pytest.fixture
def raw_settings(stack: Settings, topic_factory: Callable[..., str]) -> Callable[[str], Settings]:
    def make(source: str) -> Settings:
        src = stack.connectors.sources[source].model_copy(update={"topic": topic_factory(f"raw.{source}", 2)})
        connectors = stack.connectors.model_copy(update={"sources": {**stack.connectors.sources, source: src}})
        return stack.model_copy(update={"connectors": connectors})

    return make


def on_topic(settings: Settings, source: str) -> dict[str, dict[str, Any]]:
    topic = settings.connectors.sources[source].topic
    assert topic
    return latest_by_key(settings, read_topic(settings, topic))


def test_json_lines_with_rejects(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("realpage")
    records = rendered("realpage", "service_request")
    bad_type = dict(records[1], permissionToEnter="sometimes")
    no_id = {k: v for k, v in records[2].items() if k != "workOrderId"}
    lines = [json.dumps(records[0]), "{broken", json.dumps(bad_type), json.dumps(no_id)]
    lines += [json.dumps(r) for r in records[3:]]
    path = tmp_path / "workorders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen: list[int] = []

    summary = import_file(settings, path, "realpage", "service_request", batch_size=4, progress=seen.append)

    assert (summary.read, summary.rejected) == (len(records) + 1, 3)
    assert summary.published == len(records) - 2 and sum(seen) == summary.read
    rejects = [json.loads(line) for line in summary.rejects_path.read_text().splitlines()]
    assert [r["position"] for r in rejects] == [2, 3, 4]
    assert rejects[1]["errors"][0]["field"] == "permissionToEnter"
    assert rejects[2]["errors"][0]["field"] == "workOrderId"
    expected = {f"service_request:{r['workOrderId']}": r for r in [records[0], *records[3:]]}
    assert on_topic(settings, "realpage") == expected


def test_csv_with_dotted_columns_round_trips(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("realpage")
    records = rendered("realpage", "location")
    path = tmp_path / "locations.csv"
    rows = [flatten(r) for r in records]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    summary = import_file(settings, path, "realpage", "location")

    assert summary.rejected == 0 and summary.rejects_path is None and summary.published == len(records)
    assert on_topic(settings, "realpage") == {f"location:{r['locationId']}": r for r in records}


def test_yardi_xml_file(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("yardi")
    records = rendered("yardi", "resident")
    schema = load_schema(settings.schemas_dir, "yardi", "resident")
    root = ET.Element("Customers")
    for r in records:
        root.append(record_to_element("Customer", r, schema))
    bad = ET.SubElement(root, "Customer")
    ET.SubElement(bad, "PropertyCode").text = "mapl01"
    path = tmp_path / "customers.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

    summary = import_file(settings, path, "yardi", "resident")

    assert summary.published == len(records) and summary.rejected == 1
    reasons = json.loads(summary.rejects_path.read_text())["errors"]
    assert {e["field"] for e in reasons} >= {"Identification", "Name", "UpdateDate"}
    assert on_topic(settings, "yardi") == {f"resident:{r['Identification']['IDValue']}": r for r in records}


def test_import_command_exit_status_and_summary(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("lessen360")
    topic = settings.connectors.sources["lessen360"].topic
    records = rendered("lessen360", "attachment")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in records))
    runner = CliRunner()

    ok = runner.invoke(app, ["import", str(good), "--source", "lessen360", "--entity", "attachment", "--topic", topic])
    assert ok.exit_code == 0, ok.output
    assert str(len(records)) in ok.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(records[0]) + "\nnot json\n")
    failed = runner.invoke(app, ["import", str(bad), "--source", "lessen360", "--entity", "attachment", "--topic", topic])
    assert failed.exit_code == 1
    assert "1 rejected" in failed.output and (tmp_path / "bad.jsonl.rejects.jsonl").exists()

    wrong = runner.invoke(app, ["import", str(good), "--source", "lessen360", "--entity", "resident"])
    assert wrong.exit_code != 0
    assert on_topic(settings, "lessen360") == {f"attachment:{r['attachmentId']}": r for r in records}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Customers><Customer><PropertyCode>&lol3;</PropertyCode></Customer></Customers>"""


def test_xml_with_a_dtd_is_rejected_never_expanded(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("yardi")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(BILLION_LAUGHS)

    refused = import_file(settings, bomb, "yardi", "resident")

    assert (refused.published, refused.rejected) == (0, 1)
    reject = json.loads(refused.rejects_path.read_text())
    assert "DTD or entity declarations is not accepted" in reject["errors"][0]["reason"]
    assert "lollol" not in refused.rejects_path.read_text()
    records = rendered("yardi", "resident")[:2]
    schema = load_schema(settings.schemas_dir, "yardi", "resident")
    root = ET.Element("Customers")
    for r in records:
        root.append(record_to_element("Customer", r, schema))
    good = tmp_path / "good.xml"
    ET.ElementTree(root).write(good, encoding="utf-8", xml_declaration=True)
    assert import_file(settings, good, "yardi", "resident").published == 2
    assert set(on_topic(settings, "yardi")) == {f"resident:{r['Identification']['IDValue']}" for r in records}


def test_json_lines_nobody_designed_for_are_rejected_the_rest_published(raw_settings, tmp_path: Path) -> None:
    settings = raw_settings("realpage").model_copy(update={"kafka_max_message_bytes": 50_000})
    records = rendered("realpage", "service_request")[:3]
    lines = [
        json.dumps(records[0]).encode(),
        b"[" * 5000 + b"]" * 5000,  # deeper than the parser goes
        json.dumps(dict(records[1], workOrderId="WO-X")).encode().replace(b"WO-X", b"WO-\xff\xfe"),  # not UTF-8
        json.dumps(dict(records[1], problemDescription="lone \ud800")).encode(),
        json.dumps(dict(records[1], problemDescription="x" * 60_000)).encode(),  # over the record limit
        json.dumps(records[1]).encode(),
        json.dumps(records[2]).encode(),
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    summary = import_file(settings, path, "realpage", "service_request")

    assert (summary.read, summary.published, summary.rejected) == (7, 3, 4)
    rejects = {r["position"]: r["errors"][0]["reason"]
               for r in map(json.loads, summary.rejects_path.read_text().splitlines())}
    assert "nested too deeply" in rejects[2]
    assert "surrogate" in rejects[3] and "surrogate" in rejects[4]
    assert "50000-byte limit" in rejects[5]
    assert on_topic(settings, "realpage") == {f"service_request:{r['workOrderId']}": r for r in records}


def test_import_piped_prints_progress_lines_while_it_runs(raw_settings, tmp_path: Path) -> None:
    """With stdout a pipe, `syncflow import` prints a plain progress line at an interval, so
    progress shows while it runs, not only once it is done."""
    import re
    import subprocess
    import sys

    settings = raw_settings("lessen360")
    records = rendered("lessen360", "attachment")
    lines = [dict(r, attachmentId=f"{r['attachmentId']}-{i}") for i in range(4000 // len(records) + 1) for r in records]
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in lines))
    env = {**os.environ, "SYNCFLOW_OPS__PROGRESS_INTERVAL_S": "0.1",
           "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    proc = subprocess.Popen([sys.executable, "-c", "from syncflow.cli import main; main()", "import", str(big),
                             "--source", "lessen360", "--entity", "attachment", "--batch-size", "20",
                             "--topic", settings.connectors.sources["lessen360"].topic],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress = re.compile(r"^import lessen360 attachment: (\d+)/(\d+) \(\d+%\), \d+ s$")
    seen_running: list[int] = []
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        if (m := progress.match(line.strip())) and proc.poll() is None and int(m[1]) < int(m[2]):
            seen_running.append(int(m[1]))
    assert proc.wait(120) == 0, "".join(output)
    assert len(seen_running) >= 2 and seen_running == sorted(seen_running), "".join(output)
    assert f"import lessen360 attachment: {len(lines)}/{len(lines)} (100%)" in "".join(output)
