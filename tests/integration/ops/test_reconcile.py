"""Anti-entropy reconciliation on the real stack: a real sync-out worker delivers a small world
to the ONE emulator, the emulator loses, corrupts and rolls back records behind syncflow's
back, `syncflow reconcile` finds exactly those, `--heal` resends exactly those through the
worker, and a second reconcile finds nothing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from syncflow.agents.sync_out.rate_limit import RateLimiter
from syncflow.ops.reconcile import reconcile, run_every, serve_metrics
from syncflow.ops.resync import audit_file
from syncflow.sinks.targets.base import Delivery
from syncflow.sinks.targets.one import OneClient

from .drift import WORLD, World, cli, json_out, world  # noqa: F401 - the fixture

DRIFT = {("loc-1", "missing"), ("loc-2", "stale"), ("loc-3", "stale"), ("loc-6", "extra")}


def drift_of(report: dict) -> set[tuple[str, str]]:
    return {(d["entity_id"], d["kind"]) for d in report["drift"]}


async def test_reconcile_finds_exactly_the_drift_and_heal_resends_exactly_it(world: World) -> None:
    clean = json_out(await cli("reconcile", "--target", "one", "--json"))
    assert clean["drift"] == [] and clean["compared"] == len(WORLD)

    world.tamper("lose", "loc-1")
    world.tamper("corrupt", "loc-2", fields={"name": "renamed at the target"})
    world.tamper("rollback", "loc-3")  # back to version 1 and its content
    world.tamper("rollback", "loc-6")  # the delete (v2) undone: live again at the target

    result = await cli("reconcile", "--target", "one", "--json")
    assert result.exit_code == 3, result.output  # drift found, nothing healed
    found = json_out(result)
    assert drift_of(found) == DRIFT
    assert found["counts"] == {"missing": 1, "stale": 2, "extra": 1}
    by_id = {d["entity_id"]: d for d in found["drift"]}
    assert by_id["loc-2"]["reason"] == "same version, different content" and by_id["loc-2"]["target_version"] == 2
    assert by_id["loc-3"]["target_version"] == 1 and by_id["loc-3"]["version"] == 2
    assert by_id["loc-6"]["version"] == 2 and by_id["loc-6"]["target_version"] == 1
    assert all(d["sync_status"] == "synced" and d["healable"] for d in found["drift"])

    # a plain (rich) run prints the counts and the sample
    plain = await cli("reconcile", "--target", "one")
    assert "drift: missing 1, stale 2, extra 1" in plain.stdout and "location:loc-6" in plain.stdout

    before = len(world.state.received)
    healed = json_out(await cli("reconcile", "--target", "one", "--heal", "--json"))
    assert {(h["entity_id"], h["version"]) for h in healed["healed"]} == {("loc-1", 1), ("loc-2", 2), ("loc-3", 2), ("loc-6", 2)}
    assert healed["not_healed"] == []
    await world.drained(WORLD)
    sent = world.received_since(before)
    resend = healed["resend_id"]
    # exactly the drifted entities were sent again, each once, under a key of this heal
    assert sorted(sent) == sorted([("loc-1", 1, "upsert", f"loc-1:1/{resend}"), ("loc-2", 2, "upsert", f"loc-2:2/{resend}"),
                                   ("loc-3", 2, "upsert", f"loc-3:2/{resend}"), ("loc-6", 2, "delete", f"loc-6:2/{resend}")])
    assert world.state.out_of_order == []

    again = json_out(await cli("reconcile", "--target", "one", "--json"))
    assert again["drift"] == [] and again["compared"] == len(WORLD)
    audit = [json.loads(line) for line in audit_file(world.settings).read_text().splitlines()]
    assert [(a["action"], a["healed"], a["resend_id"]) for a in audit] == [("heal", 4, resend)]


async def test_extra_records_unknown_here_are_reported_not_healed_and_filters_narrow(world: World) -> None:
    async with OneClient(world.settings.sync_out.targets["one"]) as client:  # a record syncflow never sent
        [r] = await client.deliver([Delivery("location", "loc-ghost", 1, "upsert", "locations", {"propertyCode": "P9", "kind": "unit"})])
        assert r.ok
    world.tamper("corrupt", "loc-p2")
    world.tamper("lose", "sr-1", collection="work-orders")

    full = await reconcile(world.settings, "one")
    assert {(d.entity_id, d.kind, d.healable) for d in full.drift} == {
        ("loc-ghost", "extra", False), ("loc-p2", "stale", True), ("sr-1", "missing", True)}

    p2 = await reconcile(world.settings, "one", property_code="P2")
    assert (p2.compared, {(d.entity_id, d.kind) for d in p2.drift}) == (1, {("loc-p2", "stale")})
    srs = await reconcile(world.settings, "one", entity_type="service_request")
    assert (srs.compared, {(d.entity_id, d.kind) for d in srs.drift}) == (1, {("sr-1", "missing")})

    before = len(world.state.received)
    healed = await reconcile(world.settings, "one", heal_drift=True)
    assert {h["entity_id"] for h in healed.healed} == {"loc-p2", "sr-1"}
    assert [(n["entity_id"], n["why"].split(":")[0]) for n in healed.not_healed] == [("loc-ghost", "no entity here")]
    await world.drained(WORLD)
    assert sorted(e for e, *_ in world.received_since(before)) == ["loc-p2", "sr-1"]
    assert {(d.entity_id, d.kind) for d in (await reconcile(world.settings, "one")).drift} == {("loc-ghost", "extra")}


async def test_reads_take_tokens_from_the_groups_bucket(world: World) -> None:
    """The group-wide block a 429 sets holds reconcile's reads too: they come from the same row."""
    t = world.settings.sync_out.targets["one"]
    RateLimiter(world.engine, "one", t.rate_per_minute, t.rate_burst_s).block_for(1.5)
    requests_before = world.state.counters.get("requests", 0)
    started = time.monotonic()
    report = await reconcile(world.settings, "one", page_size=2)
    elapsed = time.monotonic() - started
    assert report.drift == [] and elapsed >= 1.4 and report.rate_wait_s >= 1.0
    # pages of 2, one token each: locations (7 records: 4 pages), work orders, tenants and documents (1 each)
    assert report.reads == 7 and world.state.counters["requests"] - requests_before == 7


async def test_scheduled_mode_exposes_drift_as_gauges(world: World, unused_tcp_port: int) -> None:
    world.tamper("lose", "loc-4")
    registry, gauges = serve_metrics(world.settings, "one", unused_tcp_port)
    await run_every(world.settings, "one", 0.1, gauges, runs=2)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics", timeout=5).read().decode())
    assert 'syncflow_reconcile_drift{kind="missing",target="one"} 1.0' in body
    assert 'syncflow_reconcile_drift{kind="stale",target="one"} 0.0' in body
    assert f'syncflow_reconcile_compared{{target="one"}} {float(len(WORLD))}' in body
    assert registry.get_sample_value("syncflow_reconcile_failures_total", {"target": "one"}) is None
