"""Selective resync on the real stack: a dry run shows, per selected entity, what would be sent
and the field-level diff against what the ONE emulator holds, and sends nothing; a real run
sends exactly the selected entities through the running worker, even though sync-out had
recorded them as synced; one audit line per run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from .drift import WORLD, World, cli, json_out, world  # noqa: F401 - the fixture
from syncflow.ops.resync import audit_file


def audit_lines(w: World) -> list[dict]:
    path = audit_file(w.settings)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_dry_run_shows_the_diff_and_sends_nothing(world: World) -> None:
    world.tamper("corrupt", "loc-2", fields={"name": "renamed at the target", "unitCode": None})
    world.tamper("lose", "loc-4")
    received, tier, rows = len(world.state.received), world.retry_topic_size(), world.sync_rows()

    result = await cli("resync", "--target", "one", "--ids", "loc-2,loc-4", "--ids", "loc-5", "--ids", "nope")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "would send location:loc-2 v2 (upsert locations), sync-out synced; target: held v2" in out
    assert "    name: target 'renamed at the target' -> syncflow 'Unit two'" in out
    assert "    unitCode: target null -> syncflow 'LOC-2'" in out
    assert "would send location:loc-4 v1 (upsert locations), sync-out synced; target: absent" in out
    assert "would send location:loc-5 v1 (upsert locations), sync-out synced; target: held v1" in out
    assert "unknown id nope" in out
    assert "resync one (dry run): selected 3, would send 3, skipped 0, unknown ids 1" in out
    loc5 = out.split("location:loc-5")[1].split("\n", 1)[1]
    assert not loc5.startswith("    ")  # same content at the target: no diff lines

    as_json = json_out(await cli("resync", "--target", "one", "--property", "P2", "--json"))
    assert [(e["entity_id"], e["target"], e["diff"]) for e in as_json["entities"]] == [("loc-p2", "held", [])]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert json_out(await cli("resync", "--target", "one", "--since", future, "--json"))["selected"] == 0

    # nothing was sent, produced or changed
    assert len(world.state.received) == received and world.retry_topic_size() == tier
    assert {k: (r.synced_version, r.status) for k, r in world.sync_rows().items()} == \
        {k: (r.synced_version, r.status) for k, r in rows.items()}
    assert [(a["dry_run"], a["selected"], a["sent"], a["would_send"]) for a in audit_lines(world)] == \
        [(True, 3, 0, 3), (True, 1, 0, 1), (True, 0, 0, 0)]


async def test_resync_sends_exactly_the_selected_entities(world: World) -> None:
    world.tamper("corrupt", "loc-2")
    world.tamper("lose", "loc-4")
    before = len(world.state.received)

    result = await cli("resync", "--target", "one", "--ids", "loc-2,loc-4,loc-5", "--no-dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    resend = report["resend_id"]
    assert report["sent"] == 3 and report["topic"].startswith("sync-out.one.retry.1") and resend.startswith("resync-")
    await world.drained(WORLD)
    # loc-5 was held unchanged and recorded as synced: it is sent all the same (forced), once
    assert sorted(world.received_since(before)) == [
        ("loc-2", 2, "upsert", f"loc-2:2/{resend}"), ("loc-4", 1, "upsert", f"loc-4:1/{resend}"),
        ("loc-5", 1, "upsert", f"loc-5:1/{resend}")]
    assert world.retry_topic_size() == 3  # the three resends, nothing else went to the tier

    # the target holds them again; the drift is gone
    assert json_out(await cli("reconcile", "--target", "one", "--json"))["drift"] == []

    # a selection by type sends that type only (the work order), not the locations
    before = len(world.state.received)
    typed = json_out(await cli("resync", "--target", "one", "--entity-type", "service_request", "--no-dry-run", "--json"))
    assert typed["sent"] == 1
    await world.drained(WORLD)
    assert [(e, v) for e, v, *_ in world.received_since(before)] == [("sr-1", 1)]
    assert [(a["dry_run"], a["sent"], a["resend_id"]) for a in audit_lines(world)] == \
        [(False, 3, resend), (False, 1, typed["resend_id"])]
