"""Anti-entropy reconciliation of one target: what the common database says the target should
hold (each entity's latest version of the types the target takes, as the transformer would
send it) against what the target's read side says it holds.

Kinds of drift:

- `missing`: the entity is live here, the target does not hold it (or holds it deleted);
- `stale`: the target holds another version (older, or newer than here), or the same version
  with other content (the payload the transformer builds from the version, by content hash);
- `extra`: the target holds a live record that is deleted here, or whose id is no entity here
  (the latter cannot be healed: there is no version to send; with --property, --since or ids
  such records cannot be told apart from other properties' and are not reported).

Entities whose latest version came from the target itself (echo suppression) are not compared.
Every read takes a token of the target's group-wide bucket (the workers' own). `heal` resends
the latest version of each healable drift through the normal sync-out path (ops/resend.py).

Not syncflow/demo/reconcile.py, which checks the demo against its ground truth."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from syncflow.agents.sync_out.registry import binding_for
from syncflow.agents.sync_out.transform import Transformer
from syncflow.errors import OpsError, SyncflowError
from syncflow.ops.resend import LimitedReader, expected_delivery, is_echo, limiter_for, new_resend_id, resend
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.latest import Latest, Selection, known_entities, latest_versions
from syncflow.sinks.targets.base import TargetRecord, payload_hash
from syncflow.streams.avro import codec_for
from syncflow.settings import Settings
from syncflow.streams.topics import ENTITY_TYPES

log = logging.getLogger(__name__)

KINDS = ("missing", "stale", "extra")
PAGE_SIZE = 500


@dataclass(frozen=True)
class Drift:
    kind: str  # missing | stale | extra
    entity_type: str
    entity_id: str
    reason: str
    version: int | None  # the latest version here (None: unknown here)
    target_version: int | None  # what the target holds (None: nothing, or it cannot say)
    sync_status: str | None = None  # what sync-out recorded for it (synced, pending, retry, failed)
    healable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReconcileReport:
    target: str
    selection: Selection
    compared: int = 0  # entities here compared with the target
    echoes: int = 0  # not compared: their latest version came from the target
    target_records: int = 0  # records read from the target
    reads: int = 0  # calls to the target's read side
    rate_wait_s: float = 0.0  # time spent waiting for tokens
    elapsed_s: float = 0.0
    drift: list[Drift] = field(default_factory=list)
    healed: list[dict[str, Any]] = field(default_factory=list)
    not_healed: list[dict[str, Any]] = field(default_factory=list)
    resend_id: str | None = None

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for d in self.drift if d.kind == k) for k in KINDS}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "selection": self.selection.to_dict(), "compared": self.compared,
                "echoes": self.echoes, "target_records": self.target_records, "reads": self.reads,
                "rate_wait_s": round(self.rate_wait_s, 3), "elapsed_s": round(self.elapsed_s, 3),
                "counts": self.counts(), "drift": [d.to_dict() for d in self.drift],
                "healed": self.healed, "not_healed": self.not_healed, "resend_id": self.resend_id}


def selection_for(transformer: Transformer, entity_type: str | None = None, property_code: str | None = None,
                  since: Any = None, ids: tuple[str, ...] | None = None) -> Selection:
    """The entity types the target takes (one of them with `entity_type`), in dependency order."""
    types = tuple(t for t in ENTITY_TYPES if transformer.takes(t))
    if entity_type is not None:
        if entity_type not in types:
            raise OpsError(f"{transformer.target} does not take entity type {entity_type!r}; it takes {', '.join(types)}")
        types = (entity_type,)
    return Selection(types, property_code, since, ids)


def compare(latest: Latest, held: TargetRecord | None, transformer: Transformer) -> Drift | None:
    """The drift of one entity of the common database against the target's record of it."""
    v = latest.version
    theirs = None if held is None else held.version
    base = {"entity_type": v.entity_type, "entity_id": v.entity_id, "version": v.version_number,
            "target_version": theirs, "sync_status": latest.sync_status}
    deleted_here = latest.deleted or v.change_type == "delete"
    live_there = held is not None and not held.deleted
    if deleted_here:
        if live_there:
            return Drift("extra", reason=f"deleted here (version {v.version_number}), live at the target", **base)
        return None
    if not live_there:
        return Drift("missing", reason="not held by the target" if held is None else "deleted at the target", **base)
    assert held is not None
    if theirs is not None and theirs != v.version_number:
        newer = " (newer than here)" if theirs > v.version_number else ""
        return Drift("stale", reason=f"the target holds version {theirs}{newer}, the latest is {v.version_number}", **base)
    expected = expected_delivery(transformer, latest).payload
    if held.content_hash != payload_hash(expected):
        what = "same version" if theirs is not None else "no version at the target"
        return Drift("stale", reason=f"{what}, different content", **base)
    return None


async def _read_all(reader: LimitedReader, resource: str, page_size: int) -> dict[str, TargetRecord]:
    held: dict[str, TargetRecord] = {}
    cursor: str | None = None
    while True:
        page = await reader(reader.client.read_page, resource, cursor, page_size)
        for r in page.records:
            held[r.external_id] = r
        cursor = page.next_cursor
        if cursor is None:
            return held


async def find_drift(settings: Settings, target: str, selection: Selection, *, engine: Engine,
                     page_size: int = PAGE_SIZE) -> ReconcileReport:
    """Compare every selected entity with the target; reads under the group's rate limit."""
    started = time.monotonic()
    client, transformer = binding_for(settings, target)
    limiter = await asyncio.to_thread(limiter_for, settings, engine, target)
    report = ReconcileReport(target, selection)
    reader = LimitedReader(client, limiter)
    filtered = selection.property_code is not None or selection.since is not None or selection.ids is not None
    async with client:
        for entity_type in selection.entity_types:
            resource = transformer.rules[entity_type].resource
            ours = await asyncio.to_thread(latest_versions, engine, target, Selection((entity_type,), selection.property_code,
                                                                                     selection.since, selection.ids))
            try:
                if selection.ids is not None:
                    held = {}
                    for latest in ours:
                        if (r := await reader(client.read_record, resource, latest.version.entity_id)) is not None:
                            held[r.external_id] = r
                else:
                    held = await _read_all(reader, resource, page_size)
            except NotImplementedError as exc:
                raise OpsError(str(exc)) from exc
            except SyncflowError as exc:
                raise OpsError(f"reading {resource} from {target} failed: {exc}") from exc
            report.target_records += len(held)
            mine = set()
            for latest in ours:
                mine.add(latest.version.entity_id)
                if is_echo(settings, target, latest):
                    report.echoes += 1
                    continue
                report.compared += 1
                if (d := compare(latest, held.get(latest.version.entity_id), transformer)) is not None:
                    report.drift.append(d)
            if not filtered:
                others = [i for i, r in held.items() if i not in mine and not r.deleted]
                known = await asyncio.to_thread(known_entities, engine, entity_type, others)
                for external_id in sorted(set(others) - known):
                    r = held[external_id]
                    report.drift.append(Drift("extra", entity_type, external_id, "no such entity here", None, r.version,
                                              None, healable=False))
    report.reads, report.rate_wait_s = reader.calls, reader.waited_s
    report.elapsed_s = time.monotonic() - started
    return report


def heal(settings: Settings, engine: Engine, report: ReconcileReport, latest_by_key: dict[tuple[str, str], Latest]) -> None:
    """Resend the latest version of every healable drift (ops/resend.py); unknown extras are
    listed in `not_healed`: there is nothing of theirs to send."""
    items = []
    for d in report.drift:
        item = latest_by_key.get((d.entity_type, d.entity_id)) if d.healable else None
        if item is None:
            report.not_healed.append({**d.to_dict(), "why": "no entity here: nothing to send (delete it at the target by hand)"})
        else:
            items.append(item)
    report.resend_id = new_resend_id("heal")
    outcome = resend(settings, engine, codec_for(settings), report.target, items, report.resend_id)
    for i in outcome.sent:
        report.healed.append({"entity_type": i.version.entity_type, "entity_id": i.version.entity_id,
                              "version": i.version.version_number, "topic": outcome.topic})
    for i in outcome.superseded:
        report.not_healed.append({"entity_type": i.version.entity_type, "entity_id": i.version.entity_id,
                                  "version": i.version.version_number, "why": "a newer version was sent meanwhile"})


async def reconcile(settings: Settings, target: str, *, entity_type: str | None = None, property_code: str | None = None,
                    heal_drift: bool = False, page_size: int = PAGE_SIZE) -> ReconcileReport:
    """One reconciliation of `target` (dry-run unless `heal_drift`)."""
    if target not in settings.sync_out.targets:
        raise OpsError(f"target {target!r} is not configured; known: {', '.join(settings.sync_out.targets)}")
    engine = make_engine(settings, pool_size=2)
    try:
        _, transformer = binding_for(settings, target)
        selection = selection_for(transformer, entity_type, property_code)
        report = await find_drift(settings, target, selection, engine=engine, page_size=page_size)
        if heal_drift and report.drift:
            wanted = {(d.entity_type, d.entity_id) for d in report.drift if d.healable}
            latest = {}
            for t in selection.entity_types:
                ids = tuple(i for et, i in wanted if et == t)
                if ids:
                    for item in await asyncio.to_thread(latest_versions, engine, target, Selection((t,), ids=ids)):
                        latest[item.key] = item
            await asyncio.to_thread(heal, settings, engine, report, latest)
        return report
    finally:
        engine.dispose()


# -- scheduled mode: drift as metrics ---------------------------------------------------------

def serve_metrics(settings: Settings, target: str, port: int):  # -> (registry, gauges)
    """Gauges syncflow_reconcile_drift{target,kind}, ..._last_success_timestamp_seconds{target},
    ..._compared{target} and the counter ..._failures_total{target}, served on `port`."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    registry = CollectorRegistry()
    gauges = {
        "drift": Gauge("syncflow_reconcile_drift", "Entities in drift at the last reconciliation", ["target", "kind"], registry=registry),
        "last": Gauge("syncflow_reconcile_last_success_timestamp_seconds", "When the last reconciliation finished",
                      ["target"], registry=registry),
        "compared": Gauge("syncflow_reconcile_compared", "Entities compared at the last reconciliation", ["target"], registry=registry),
        "failures": Counter("syncflow_reconcile_failures", "Reconciliations that failed", ["target"], registry=registry),
    }
    if port:
        start_http_server(port, addr=settings.http_host, registry=registry)
    return registry, gauges


def record_metrics(gauges: dict[str, Any], report: ReconcileReport) -> None:
    for kind, n in report.counts().items():
        gauges["drift"].labels(report.target, kind).set(n)
    gauges["compared"].labels(report.target).set(report.compared)
    gauges["last"].labels(report.target).set(time.time())


async def run_every(settings: Settings, target: str, every_s: float, gauges: dict[str, Any], *,
                    entity_type: str | None = None, property_code: str | None = None, heal_drift: bool = False,
                    on_report: Callable[[ReconcileReport], None] | None = None, runs: int | None = None) -> None:
    """Reconcile every `every_s` seconds (from the start of one run to the next), keeping the
    gauges current; a failed run is counted and logged, the gauges keep the last good values."""
    done = 0
    while runs is None or done < runs:
        started = time.monotonic()
        try:
            report = await reconcile(settings, target, entity_type=entity_type, property_code=property_code, heal_drift=heal_drift)
            record_metrics(gauges, report)
            if on_report is not None:
                on_report(report)
        except Exception as exc:  # noqa: BLE001 - a scheduled run must survive a bad one
            gauges["failures"].labels(target).inc()
            log.warning("reconcile %s failed: %s", target, exc)
        done += 1
        if runs is not None and done >= runs:
            return
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))
