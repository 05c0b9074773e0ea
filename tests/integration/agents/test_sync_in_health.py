"""Sync-in's health as an orchestrator sees it, on a real worker subprocess: a batch hung in
the database makes /ready fail with the stall and /health fail once the loop is stuck
longer than the liveness timeout; both recover when it moves again, and the group's lag is
exported on /metrics as it grows and drains."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syncflow.connectors.schemas import schema_name
from syncflow.emulators.sources.render import render
from syncflow.streams.avro import codec_for
from syncflow.streams.metrics import CONSUMER_LAG
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings
from syncflow.streams.topics import raw_key, raw_topic
from tests.integration.agents.test_poison import start_worker, valid_pool, wait_for, world  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def group_lag(port: int, group: str) -> float | None:
    """The sum of syncflow_consumer_lag{group=...} on the worker's /metrics."""
    status, body = get(port, "/metrics")
    if status != 200:
        return None
    values = [float(v) for v in re.findall(rf'^{CONSUMER_LAG}{{group="{re.escape(group)}",[^}}]*}} (\S+)$', body, re.M)]
    return sum(values) if values else None


def test_a_hung_batch_fails_readiness_then_liveness_and_both_recover(
    world: tuple[Settings, str, Path], unique: Callable[[str], str]
) -> None:
    settings, suffix, tmp = world
    group = unique("sync-in-health")
    worker = start_worker(settings, suffix, group, tmp, SYNCFLOW_OPS__STALL_AFTER_S="3",
                          SYNCFLOW_OPS__LIVENESS_TIMEOUT_S="8", SYNCFLOW_OPS__LAG_CACHE_S="0.5",
                          SYNCFLOW_OPS__HEALTH_CACHE_S="0.2", SYNCFLOW_SYNC_IN__OUTBOX_SWEEP_INTERVAL_S="1")
    engine = create_engine(settings.database_url, connect_args={"options": f"-csearch_path={settings.database_schema}"})
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:  # the worker's next batch blocks on this lock: a hung attempt
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE data_versions IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(120)

    holder = threading.Thread(target=hold_lock, daemon=True)
    try:
        wait_for(lambda: get(worker.port, "/ready")[0] == 200, 90, "the worker to be ready", worker)
        assert group_lag(worker.port, group) == 0
        holder.start()
        assert locked.wait(30)
        topic = raw_topic("yardi") + suffix
        codec = codec_for(settings)
        entity = valid_pool()[0]
        ReliableProducer(settings).send_all([OutgoingRecord(
            topic, raw_key(entity.entity_type, entity.source_id).encode(),
            codec.encode(schema_name("yardi", entity.entity_type), render(entity), topic=topic), [])])
        wait_for(lambda: (group_lag(worker.port, group) or 0) >= 1, 30, "the lag metric to show the record", worker)

        def not_ready_with_stall() -> bool:
            status, body = get(worker.port, "/ready")
            checks = {c["name"]: c for c in json.loads(body)["checks"]} if status == 503 else {}
            return "progress" in checks and not checks["progress"]["ok"]

        wait_for(not_ready_with_stall, 60, "/ready to report the stall", worker)
        wait_for(lambda: get(worker.port, "/health")[0] == 503, 60, "/health to fail while the loop is hung", worker)
        release.set()
        wait_for(lambda: get(worker.port, "/health")[0] == 200, 60, "/health to recover", worker)
        wait_for(lambda: get(worker.port, "/ready")[0] == 200, 60, "/ready to recover", worker)
        wait_for(lambda: group_lag(worker.port, group) == 0, 60, "the lag metric to drain", worker)
    finally:
        release.set()
        if holder.is_alive():
            holder.join(10)
        engine.dispose()
        if worker.proc.poll() is None:
            worker.proc.terminate()
            try:
                worker.proc.wait(30)
            except Exception:  # noqa: BLE001 - cleanup only
                worker.proc.kill()
        worker.log.close()
