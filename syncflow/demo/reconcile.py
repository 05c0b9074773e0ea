"""Reconciliation: prove from the sources' ground truth, the common database, the DLQs and
the targets' own records that nothing was lost and nothing duplicated.

The source emulators know every record they serve (and every record they ever served
invalid); the target emulators know every request they applied. Everything in between is
read from the real stores and topics."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from syncflow.agents.hashing import content_hash
from syncflow.agents.sync_out.transform import Transformer
from syncflow.agents.rules import RulesEngine
from syncflow.errors import SyncflowError
from syncflow.model import EntityKey
from syncflow.ops.dead_letter_queue import DlqRecord, read_dlq
from syncflow.ops.status import consumer_groups
from syncflow.sinks.common_db import counts
from syncflow.streams.admin import admin_client, topic_partitions, watermarks
from syncflow.streams.avro import AvroCodec
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.streams.headers import INJECTED, header_value
from syncflow.settings import Settings
from syncflow.streams.topics import SYNC_IN_DLQ, target_dlq

TRANSIENT_CATEGORIES = {"transient", "rate-limited"}
SourceKey = tuple[str, str, str]  # source, entity_type, source_id


@dataclass(frozen=True)
class SourceRecord:
    """One record as its source currently serves it, with the emulator's verdict."""

    source: str
    entity_type: str
    source_id: str
    record: dict[str, Any]
    deleted: bool
    invalid: str | None
    invalid_ever: bool


@dataclass(frozen=True)
class TargetTruth:
    """What one target emulator holds and every request it applied."""

    entities: dict[EntityKey, tuple[int | None, bool]]  # -> (version, deleted)
    received: list[dict[str, Any]]
    out_of_order: list[dict[str, Any]]


@dataclass
class Reconciliation:
    counts: dict[str, int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str) -> None:
        self.problems.append(message)


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def fetch_source_truth(settings: Settings) -> list[SourceRecord]:
    out: list[SourceRecord] = []
    for source, src in settings.connectors.sources.items():
        body = get_json(f"{src.base_url.rstrip('/')}/_emulator/records")
        for r in body["records"]:
            out.append(SourceRecord(source, r["entity_type"], r["source_id"], r["record"], r["deleted"],
                                    r["invalid"], r.get("invalid_ever", bool(r["invalid"]))))
    return out


def fetch_target_truth(settings: Settings, target: str, transformer: Transformer) -> TargetTruth:
    """The target's state and applied requests, keyed by canonical entity type (the target
    names its own collections; the transformer rules say which is which)."""
    entity_type_of = {rule.resource: entity_type for entity_type, rule in transformer.rules.items()}
    base = settings.sync_out.targets[target].base_url.rstrip("/")
    state = get_json(f"{base}/_emulator/state")
    entities: dict[EntityKey, tuple[int | None, bool]] = {}
    for key, e in state["entities"].items():
        resource, entity_id = key.split("/", 1)
        entities[(entity_type_of.get(resource, resource), entity_id)] = (e["version"], e["deleted"])
    received = [{**a, "entity_type": entity_type_of.get(a["entity_type"], a["entity_type"])}
                for a in get_json(f"{base}/_emulator/received")]
    return TargetTruth(entities, received, state.get("out_of_order", []))


def _dlq(settings: Settings, topic: str) -> list[DlqRecord]:
    return read_dlq(settings, topic, None, None)


def reconcile(settings: Settings, engine: Engine, rules: RulesEngine, codec: AvroCodec,
              *, sources: list[SourceRecord] | None = None, strict: bool = True,
              injected: Mapping[str, tuple[str, ...]] | None = None) -> Reconciliation:
    """Every check, with counts for the summary. `problems` empty means all held.

    `injected`: bad records produced straight to the raw topics (header INJECTED = their
    name) and the DLQ categories each may have; every one must be in sync-in.dlq so.

    `strict`: a change parked in a target DLQ after its retries ran out on transient errors
    is a problem (the fault-injection suite's retries outlast its faults); otherwise it is
    counted as parked with its reason, as an operator would see it before a redrive."""
    result = Reconciliation()
    sources = fetch_source_truth(settings) if sources is None else sources
    sync_in_dlq = _dlq(settings, SYNC_IN_DLQ + settings.sync_in.topic_suffix)
    _check_sync_in(settings, engine, rules, codec, sources, sync_in_dlq, result, injected or {})
    _check_versions(engine, result)
    result.counts["raw records"] = raw_record_count(settings)
    for target in settings.sync_out.targets:
        transformer = Transformer.from_file(settings.sync_out.rules_file, target)
        dlq = _dlq(settings, target_dlq(target) + settings.sync_out.topic_suffix)
        truth = fetch_target_truth(settings, target, transformer)
        entity_types = [t for t in settings.sync_out.targets[target].entity_types if transformer.takes(t)]
        _check_target(settings, engine, target, entity_types, truth, dlq, result, strict)
    return result


# -- sync-in -----------------------------------------------------------------------------
def _check_sync_in(settings: Settings, engine: Engine, rules: RulesEngine, codec: AvroCodec,
                   sources: list[SourceRecord], dlq: list[DlqRecord], result: Reconciliation,
                   injected: Mapping[str, tuple[str, ...]]) -> None:
    c = result.counts
    dlq_keys = Counter((r.key or b"").decode() for r in dlq)
    heads = _master_heads(engine)
    ever_invalid = {(s.source, s.entity_type, s.source_id) for s in sources if s.invalid_ever}
    for s in sources:
        c["source records"] += 1
        raw_key = f"{s.entity_type}:{s.source_id}"
        if s.invalid and not s.deleted:
            c["source records invalid now"] += 1
            if dlq_keys[raw_key] == 0:
                result.problem(f"{s.source} {raw_key}: served invalid ({s.invalid}) but not in sync-in.dlq")
            continue
        try:
            native = codec.decode(codec.encode(f"io.syncflow.{s.source}.{_entity_name(s.entity_type)}", s.record)).record
            expected = rules.transform(s.source, s.entity_type, native)
        except SyncflowError as exc:
            result.problem(f"{s.source} {raw_key}: the source serves it as valid but it does not pass: {exc}")
            continue
        c["source records valid"] += 1
        head = heads.get((s.entity_type, expected.entity_id, s.source))
        if head is None:
            c["source records missing in common DB"] += 1
            result.problem(f"{s.source} {raw_key}: no version in the common database ({expected.entity_id})")
        elif head != content_hash(expected.entity):
            c["source records missing in common DB"] += 1
            result.problem(f"{s.source} {raw_key}: the common database does not hold its current content")
        else:
            c["source records current in common DB"] += 1
    c["sync-in.dlq records"] = len(dlq)
    found: set[str] = set()
    for r in dlq:
        if (case := header_value(r.headers, INJECTED)) is not None:
            category = read_failure_headers(r.headers).get("error.category")
            if category not in injected.get(case, ()):
                result.problem(f"sync-in.dlq holds injected record {case} as {category}; expected {injected.get(case)}")
            else:
                found.add(case)
                c["sync-in.dlq records explained"] += 1
                c["injected bad records dead-lettered"] += 1
            continue
        key = (r.key or b"").decode(errors="replace")
        entity_type, _, source_id = key.partition(":")
        source = read_failure_headers(r.headers).get("original.topic", "").removeprefix("raw.")
        source = source.removesuffix(settings.sync_in.topic_suffix) if settings.sync_in.topic_suffix else source
        if (source, entity_type, source_id) not in ever_invalid:
            result.problem(f"sync-in.dlq holds {source} {key}, which its source never served invalid")
        else:
            c["sync-in.dlq records explained"] += 1
    for case in sorted(set(injected) - found):
        result.problem(f"injected bad record {case} is not in sync-in.dlq")


def raw_record_count(settings: Settings) -> int:
    """Records on the raw topics (everything the connectors, the ingest API and the
    injected bad records put there, re-reads included)."""
    admin = admin_client(settings)
    topics = consumer_groups(settings)[settings.sync_in.group_id]
    return sum(high - low for low, high in watermarks(admin, topic_partitions(admin, topics)).values())


def _entity_name(entity_type: str) -> str:
    return "".join(part.capitalize() for part in entity_type.split("_"))


def _master_heads(engine: Engine) -> dict[tuple[str, str, str], str]:
    """(entity_type, entity_id, source) -> hash of that source's latest version."""
    with engine.connect() as conn:
        return counts.latest_hash_per_source(conn)


def _check_versions(engine: Engine, result: Reconciliation) -> None:
    with engine.connect() as conn:
        gaps = counts.version_gaps(conn)
        versions, entities, unpublished = counts.version_counts(conn)
    result.counts["versions written"] = versions
    result.counts["entities versioned"] = entities
    for entity_type, entity_id, n, low, high in gaps[:20]:
        result.problem(f"{entity_type} {entity_id}: versions not gap-free ({n} versions, {low}..{high})")
    if unpublished:
        result.problem(f"{unpublished} committed versions have no published change event")


# -- sync-out ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    version: int
    deleted: bool
    references: dict[str, str]


def _expected_at_target(engine: Engine, target: str, entity_types: list[str], echo: bool) -> dict[EntityKey, Expected]:
    """Per entity: the latest version the target should hold (skipping versions that came
    from the target itself when echo suppression is on)."""
    with engine.connect() as conn:
        latest = counts.latest_of_entities(conn, entity_types, not_from=target if echo else None)
    return {key: Expected(version, change == "delete", refs or {}) for key, (version, change, refs) in latest.items()}


def _check_target(settings: Settings, engine: Engine, target: str, entity_types: list[str], truth: TargetTruth,
                  dlq: list[DlqRecord], result: Reconciliation, strict: bool) -> None:
    c = result.counts
    conf = settings.sync_out.targets[target]
    expected = _expected_at_target(engine, target, entity_types, conf.echo_suppression)
    parked: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in dlq:
        parked[(r.key or b"").decode()].append(read_failure_headers(r.headers))
    c[f"{target}: DLQ records"] = len(dlq)
    delivered: set[str] = set()
    for key, want in expected.items():
        c[f"{target}: changes to deliver"] += 1
        held = truth.entities.get(key)
        if held is not None and held[0] == want.version and held[1] == want.deleted:
            c[f"{target}: delivered at latest version"] += 1
            delivered.add(key[1])
            continue
        if held is None and want.deleted:
            c[f"{target}: deleted before it was ever delivered"] += 1
            continue
        missing = [ref for ref_type, ref in want.references.items()
                   if ref_type in entity_types and not _holds(truth, ref_type, ref)]
        if key[1] in parked:  # its reason is checked below
            waiting = parked[key[1]][-1].get("error.category") == "dependency"
            if not waiting or missing:
                continue
        state = "nothing" if held is None else f"version {held[0]}{' (deleted)' if held[1] else ''}"
        c[f"{target}: missing at the target"] += 1
        result.problem(f"{target}: {key[0]} {key[1]} should be at version {want.version}, holds {state}")
    applied = Counter((a["entity_type"], a["external_id"], a["version"]) for a in truth.received)
    duplicates = [k for k, n in applied.items() if n > 1]
    c[f"{target}: requests applied"] = len(truth.received)
    c[f"{target}: applied more than once"] = len(duplicates)
    for k in duplicates[:20]:
        result.problem(f"{target}: {k[0]} {k[1]} version {k[2]} applied {applied[k]} times")
    for item in truth.out_of_order[:20]:
        result.problem(f"{target}: out-of-order delivery {item}")
    for key, failures in parked.items():
        last = failures[-1]
        if last.get("error.category") == "dependency":
            if key in delivered:  # its reference came late: released from parked_dependents
                c[f"{target}: parked, delivered once its reference came"] += 1
            else:
                c[f"{target}: parked, dependency never delivered"] += 1
            continue
        if not strict and last.get("error.category") in TRANSIENT_CATEGORIES:
            c[f"{target}: parked after retries ran out (redrive them)"] += 1
            continue
        result.problem(f"{target} DLQ holds {key}: {last.get('exception.message')}")


def _holds(truth: TargetTruth, entity_type: str, entity_id: str) -> bool:
    held = truth.entities.get((entity_type, entity_id))
    return held is not None and not held[1]
