"""`syncflow pause --source yardi` and `--source realpage --property <P>` on a running sync-in
worker (a real subprocess): nothing of the paused scopes is applied (no raw document, no
version, nothing committed on yardi's raw topic) while the other sources and realpage's other
properties are; the held records show in the worker's metrics. After the resume everything
is applied exactly as if there had been no pause: the oracle's versions, every raw document
at the last record sent for its key, every event published, the group at the end of every
raw topic — no record lost."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import pytest

from syncflow.streams.admin import admin_client, group_lag
from syncflow.sinks.common_db.pauses import pause, resume
from syncflow.streams.topics import raw_topic

from .test_sync_in_worker import Pipeline, assert_outcome, make_stream, pipeline  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def metric(port: int, name: str, system: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f'{name}{{side="sync-in",system="{system}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_source_pause_holds_records_and_resume_applies_everything(pipeline: Pipeline, unique: Callable[[str], str]) -> None:  # noqa: F811
    p = pipeline
    stream = make_stream(p.settings, volume=45, changes=10)  # realpage has two properties
    realpage = [(t, sid, r) for s, t, sid, r in stream.records if s == "realpage"]
    held_property = Counter(r["propertyCode"] for _, _, r in realpage).most_common(1)[0][0]
    paused_keys = {(t, sid) for t, sid, r in realpage if r.get("propertyCode") == held_property}
    held_realpage = sum(1 for t, sid, _ in realpage if (t, sid) in paused_keys)
    yardi_records = sum(1 for s, *_ in stream.records if s == "yardi")
    assert paused_keys and held_realpage < len(realpage) and yardi_records
    pause(p.engine, "sync-in", "yardi", reason="yardi feed being re-keyed", by="test")
    pause(p.engine, "sync-in", "realpage", prop=held_property.lower(), by="test")

    p.produce(stream)
    group = unique("sync-in-pause")
    proc = p.start(group, batch_size=50, SYNCFLOW_OPS__PAUSE_REFRESH_S="0.5")
    port = int(proc.args[proc.args.index("--web-port") + 1])

    def sources_applied() -> Counter:
        return Counter(d["sourceSystem"] for d in p.raw_documents().values())

    by_source = Counter(stream.records[i][0] for i, _ in stream.raw.values())
    realpage_docs = sum(1 for i, _ in stream.raw.values()
                        if stream.records[i][0] == "realpage" and stream.records[i][1:3] not in paused_keys)

    def unpaused_done() -> bool:
        got = sources_applied()
        return (got["insight"] == by_source["insight"] and got["lessen360"] == by_source["lessen360"]
                and got["realpage"] == realpage_docs)

    p.wait(unpaused_done, 120, "the sources not paused")
    p.wait(lambda: metric(port, "syncflow_held_records", "realpage") == held_realpage, 30, "realpage's held records")
    time.sleep(2.0)  # batches and refreshes later, the paused scopes are still untouched
    got = sources_applied()
    assert got["yardi"] == 0 and got["realpage"] == realpage_docs, got
    masters = p.sql("SELECT source_system, entity_type, source_id FROM sync_master_data")
    assert not [m for m in masters if m[0] == "yardi" or (m[0] == "realpage" and (m[1], m[2]) in paused_keys)]
    admin = admin_client(p.settings)
    assert sum(group_lag(admin, group, [p.topic(raw_topic("yardi"))]).values()) == yardi_records  # nothing committed
    assert sum(group_lag(admin, group, [p.topic(raw_topic("insight"))]).values()) == 0
    assert metric(port, "syncflow_paused_scopes", "yardi") == 1.0
    assert metric(port, "syncflow_paused_scopes", "insight") == 0.0

    resume(p.engine, "sync-in", "yardi")
    resume(p.engine, "sync-in", "realpage", prop=held_property)
    p.wait(lambda: p.caught_up(group) and p.versions() == stream.versions, 120, "everything after the resume")
    p.wait(lambda: p.sql("SELECT count(*) FROM data_versions WHERE published_at IS NULL")[0][0] == 0, 30, "publishing")
    assert_outcome(p, stream)
    assert metric(port, "syncflow_held_records", "realpage") == 0.0
