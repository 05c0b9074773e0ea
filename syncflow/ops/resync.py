"""Selective resync: re-emit the current version of selected entities to one target, the same
way reconcile --heal does (ops/resend.py: a forced resend on `sync-out.<target>.retry.1`,
through the target's own workers). A dry run sends nothing; per entity it shows what would be
sent and, read from the target under the group's rate limit, a field-level diff against what
the target holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from syncflow.agents.sync_out.registry import binding_for
from syncflow.errors import OpsError, SyncflowError
from syncflow.ops.reconcile import selection_for
from syncflow.ops.resend import LimitedReader, expected_delivery, field_diff, is_echo, limiter_for, new_resend_id, resend
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.latest import Latest, latest_versions
from syncflow.streams.avro import codec_for
from syncflow.settings import Settings


def audit_file(settings: Settings) -> Path:
    """resync.jsonl beside the DLQ redrive's audit file: one line per resync or heal run."""
    return settings.ops.audit_file.parent / "resync.jsonl"


@dataclass
class ResyncReport:
    target: str
    selection: dict[str, Any]
    dry_run: bool
    entities: list[dict[str, Any]] = field(default_factory=list)  # per entity: what is (or would be) sent
    skipped: list[dict[str, Any]] = field(default_factory=list)  # echoes, superseded
    missing_ids: list[str] = field(default_factory=list)  # --ids that are no entity here
    resend_id: str | None = None
    topic: str | None = None

    @property
    def sent(self) -> int:
        return 0 if self.dry_run else len(self.entities)

    def summary(self) -> dict[str, Any]:
        return {"action": "resync", "target": self.target, "dry_run": self.dry_run, "selection": self.selection,
                "selected": len(self.entities) + len(self.skipped), "sent": self.sent,
                "would_send": len(self.entities) if self.dry_run else 0, "skipped": len(self.skipped),
                "unknown_ids": self.missing_ids, "resend_id": self.resend_id, "topic": self.topic}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "entities": self.entities, "skipped_entities": self.skipped}


def _describe(item: Latest) -> dict[str, Any]:
    v = item.version
    return {"entity_type": v.entity_type, "entity_id": v.entity_id, "version": v.version_number,
            "change_type": v.change_type, "sync_status": item.sync_status, "synced_version": item.synced_version}


async def resync(settings: Settings, target: str, *, entity_type: str | None = None, property_code: str | None = None,
                 since: datetime | None = None, ids: tuple[str, ...] | None = None, dry_run: bool = True,
                 diff: bool = True, on_progress: Callable[[int, int], None] | None = None) -> ResyncReport:
    """Resync the selected entities of `target` (see the module)."""
    if target not in settings.sync_out.targets:
        raise OpsError(f"target {target!r} is not configured; known: {', '.join(settings.sync_out.targets)}")
    client, transformer = binding_for(settings, target)
    selection = selection_for(transformer, entity_type, property_code, since, ids)
    report = ResyncReport(target, selection.to_dict(), dry_run)
    engine = make_engine(settings, pool_size=2)
    try:
        items = await asyncio.to_thread(latest_versions, engine, target, selection)
        if ids is not None:
            report.missing_ids = sorted(set(ids) - {i.version.entity_id for i in items})
        chosen: list[Latest] = []
        for item in items:
            if is_echo(settings, target, item):
                report.skipped.append({**_describe(item), "why": f"its latest version came from {target} (echo)"})
            else:
                chosen.append(item)
        reader = LimitedReader(client, await asyncio.to_thread(limiter_for, settings, engine, target)) if dry_run and diff else None
        async with client:
            for n, item in enumerate(chosen, start=1):
                entry = _describe(item)
                delivery = expected_delivery(transformer, item)
                entry.update(op=delivery.op, resource=delivery.resource, payload=delivery.payload)
                if reader is not None:
                    entry.update(await _target_diff(reader, delivery.resource, item, delivery.payload))
                report.entities.append(entry)
                if on_progress is not None:
                    on_progress(n, len(chosen))
        if not dry_run:
            report.resend_id = new_resend_id("resync")
            outcome = await asyncio.to_thread(resend, settings, engine, codec_for(settings), target, chosen, report.resend_id)
            report.topic = outcome.topic
            superseded = {i.key for i in outcome.superseded}
            for item in outcome.superseded:
                report.skipped.append({**_describe(item), "why": "a newer version was sent meanwhile"})
            report.entities = [e for e in report.entities if (e["entity_type"], e["entity_id"]) not in superseded]
        return report
    finally:
        engine.dispose()


async def _target_diff(reader: LimitedReader, resource: str, item: Latest, payload: dict[str, Any] | None) -> dict[str, Any]:
    """What the target holds of this entity, as a field-level diff (dry run)."""
    try:
        held = await reader(reader.client.read_record, resource, item.version.entity_id)
    except NotImplementedError:
        return {"target": "no read side"}
    except SyncflowError as exc:
        return {"target": f"could not be read: {exc}"}
    if held is None:
        return {"target": "absent", "target_version": None, "diff": field_diff(payload, {})}
    return {"target": "deleted" if held.deleted else "held", "target_version": held.version,
            "diff": field_diff(payload, held.payload or {}) if payload is not None else []}
