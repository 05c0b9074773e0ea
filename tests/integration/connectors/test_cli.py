"""The demo path as an operator runs it: `sources emulate` in one process, `sources
connector --once` in another, records on the raw topic."""

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

from syncflow.streams.settings import Settings

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


def test_emulate_then_connector_once(stack: Settings, topic_factory: Callable[..., str], tmp_path: Path) -> None:
    topic = topic_factory("raw.cli", 2)
    ports = {s: free_port() for s in SOURCES}
    connectors = {"cursor_dir": str(tmp_path / "cursors"), "emulator_volume": 24,
                  "sources": {s: {"base_url": f"http://127.0.0.1:{p}", "topic": topic} for s, p in ports.items()}}
    env = {**os.environ, "SYNCFLOW_CONNECTORS": json.dumps(connectors),
           "SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers}
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
