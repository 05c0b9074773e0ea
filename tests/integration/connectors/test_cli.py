"""The demo path as an operator runs it: `sources emulate` in one process, `sources
connector --once` in another, records on the raw topic; a connector started on another
machine (nothing local) continues where the previous one stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

import pytest

from syncflow.settings import Settings

from .conftest import read_topic

pytestmark = pytest.mark.integration

CLI = "from syncflow.cli.sources import app; app()"
SOURCES = ["yardi", "realpage", "insight", "lessen360"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urlopen(url, timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_emulate_then_connector_once(settings: Settings, topic_factory: Callable[..., str]) -> None:
    stack = settings  # its own schema, where the connectors keep their cursors
    topic = topic_factory("raw.cli", 2)
    ports = {s: free_port() for s in SOURCES}
    connectors = {"emulator_volume": 24,
                  "sources": {s: {"base_url": f"http://127.0.0.1:{p}", "topic": topic} for s, p in ports.items()}}
    env = {**os.environ, "SYNCFLOW_CONNECTORS": json.dumps(connectors),
           "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
           "SYNCFLOW_DATABASE_SCHEMA": stack.database_schema}
    emulators = subprocess.Popen([sys.executable, "-c", CLI, "emulate", "--seed", "4"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        totals = {}
        for source, port in ports.items():
            truth = wait_for(f"http://127.0.0.1:{port}/_emulator/records")
            assert truth["source"] == source
            totals[source] = len(truth["records"])
        for source in ("insight", "lessen360"):
            run = subprocess.run([sys.executable, "-c", CLI, "connector", "--source", source, "--once"], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"{totals[source]} records" in run.stdout
        messages = read_topic(stack, topic)
        assert len(messages) == totals["insight"] + totals["lessen360"]
        assert {m.headers["source-system"] for m in messages} == {"insight", "lessen360"}
    finally:
        emulators.terminate()
        emulators.wait(10)


def test_a_connector_on_a_fresh_machine_continues_where_the_last_one_stopped(
        settings: Settings, topic_factory: Callable[..., str], tmp_path: Path) -> None:
    """Each run is a new process with its own empty state folder and working directory, and
    only the services' addresses in its environment: the second publishes nothing again,
    because the cursors and published fingerprints are in the common database."""
    topic = topic_factory("raw.cli", 2)
    ports = {s: free_port() for s in SOURCES}
    sources = {s: {"base_url": f"http://127.0.0.1:{p}", "topic": topic} for s, p in ports.items()}
    services = {"SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "SYNCFLOW_DATABASE_URL": settings.database_url, "SYNCFLOW_MONGO_URL": settings.mongo_url,
                "SYNCFLOW_DATABASE_SCHEMA": settings.database_schema,
                "SYNCFLOW_CONNECTORS": json.dumps({"emulator_volume": 24, "sources": sources})}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCFLOW_")} | services

    def machine(name: str) -> tuple[dict[str, str], Path]:
        home = tmp_path / name
        (home / "state").mkdir(parents=True)
        return {**base_env, "HOME": str(home), "SYNCFLOW_STACK_DIR": str(home / "state")}, home

    env, home = machine("emulators")
    emulators = subprocess.Popen([sys.executable, "-c", CLI, "emulate", "--seed", "5"], env=env, cwd=home,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        total = len(wait_for(f"http://127.0.0.1:{ports['yardi']}/_emulator/records", timeout=60)["records"])
        published = []
        for name in ("first", "second"):
            env, home = machine(name)
            run = subprocess.run([sys.executable, "-c", CLI, "connector", "--source", "yardi", "--once"], env=env,
                                 cwd=home, capture_output=True, text=True, timeout=90)
            assert run.returncode == 0, run.stdout + run.stderr
            published.append(len(read_topic(settings, topic)))
            assert not any((home / "state").iterdir()), "nothing is kept on the machine"
        assert published == [total, total], "the second connector published again what the first had"
        assert ", 0 records," in run.stdout
    finally:
        emulators.terminate()
        emulators.wait(10)
