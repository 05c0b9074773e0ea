"""One record's whole path, for `syncflow trace`: from a source record
(`<source>:<entity_type>:<source_id>`), a canonical entity id or a trace id to

- the raw document(s), with their inbound status, outbound statuses and errors;
- the raw record(s) on raw.<source> and in sync-in.dlq (bounded Kafka scan);
- each version (number, change type, changed fields, hash, when, the raw record that made it);
- each change event on changes.<entity_type> (topic, partition, offset, published at);
- per target: sent and applied version, attempts, status, the idempotency key of the version
  sent (`<entity_id>:<version>`), every try found in its retry tiers and dependency lane, and
  its DLQ entries with their reasons;

and all of it as one timeline. The reads live where they belong: PostgreSQL in
sinks/common_db/lineage.py, the raw store in sinks/raw_store.py, Kafka in ops/key_scan.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from syncflow.streams.topics import ENTITY_TYPES, SOURCES, SyncInTopics, sync_out_topics
from syncflow.ops.key_scan import ScanResult, scan_for
from syncflow.ops.times import iso_ms
from syncflow.sinks.common_db import lineage
from syncflow.model import RawKey
from syncflow.sinks.raw_store import RawRecordStore, from_document
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.streams.records import KafkaRecord
from syncflow.settings import Settings

Decode = Callable[[bytes, str], dict[str, Any]]


@dataclass(frozen=True)
class TraceRef:
    """What the operator asked about."""

    text: str
    source: str | None = None
    entity_type: str | None = None
    source_id: str | None = None

    @property
    def is_source_record(self) -> bool:
        return self.source is not None


def parse_ref(text: str) -> TraceRef:
    """`<source>:<entity_type>:<source_id>` (the source id may hold ':'), else the text as an
    entity id or a trace id (told apart by what the common database knows)."""
    source, _, rest = text.partition(":")
    entity_type, _, source_id = rest.partition(":")
    if source in SOURCES and entity_type in ENTITY_TYPES and source_id:
        return TraceRef(text, source, entity_type, source_id)
    return TraceRef(text)


def _ms(value: datetime | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    return int(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


@dataclass
class TopicRole:
    kind: str  # raw | sync-in-dlq | changes | retry | dependency | dlq
    target: str | None = None
    tier: int | None = None


@dataclass
class Trace:
    ref: str
    resolved_as: str  # source-record | entity | trace-id | unknown
    entities: list[dict[str, Any]] = field(default_factory=list)
    raw_documents: list[dict[str, Any]] = field(default_factory=list)
    raw_records: list[dict[str, Any]] = field(default_factory=list)  # on raw.<source>
    sync_in_dlq: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    scan: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.entities or self.raw_documents or self.raw_records or self.sync_in_dlq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "resolved_as": self.resolved_as, "entities": self.entities,
            "raw_documents": self.raw_documents, "raw_records": self.raw_records, "sync_in_dlq": self.sync_in_dlq,
            "timeline": self.timeline, "scan": self.scan,
        }  # fmt: skip


def _record_place(r: KafkaRecord) -> dict[str, Any]:
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset, "at": _iso(r.timestamp_ms),
            "trace_id": header_value(r.headers, TRACE_ID)}


def _failure(r: KafkaRecord) -> dict[str, Any]:
    f = read_failure_headers(r.headers)
    failed_at = int(f["failed.at"]) if f.get("failed.at", "").isdigit() else r.timestamp_ms
    return {
        "attempt": int(f["attempt"]) if f.get("attempt", "").isdigit() else None,
        "category": f.get("error.category"), "message": f.get("exception.message"),
        "exception": f.get("exception.class"), "http_status": f.get("http.status"),
        "failed_at": _iso(failed_at), "_failed_ms": failed_at, "rule": f.get("rule"),
    }  # fmt: skip


def _raw_document_summary(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    sync = doc.get("syncStatus") or {}
    errors = [{"at": _iso(_ms(e.get("timestamp"))), "error": e.get("error"), "retry_count": e.get("retryCount"),
               "field_errors": from_document(e.get("fieldErrors") or [])} for e in doc.get("errorLog") or []]
    return {
        "source": doc.get("sourceSystem"), "entity_type": doc.get("entityType"), "source_id": doc.get("sourceId"),
        "inbound": sync.get("inbound"), "outbound": dict(sync.get("outbound") or {}), "version": meta.get("version"),
        "hash": meta.get("hash"), "trace_id": meta.get("traceId"), "batch_number": meta.get("batchNumber"),
        "written_at": _iso(_ms(meta.get("syncDate"))), "created_at": _iso(_ms(doc.get("createDate"))), "errors": errors,
    }  # fmt: skip


def build_trace(settings: Settings, ref_text: str, *, engine: Engine, raw_store: RawRecordStore,
                decode: Decode | None = None, per_partition: int = 5000) -> Trace:
    """Everything known about the record named by `ref_text` (see the module docstring)."""
    ref = parse_ref(ref_text)
    trace_ids: set[str] = set()
    source_records: list[tuple[str, str, str]] = []  # (source, entity_type, source_id)
    raw_docs: list[dict[str, Any]] = []
    if ref.is_source_record:
        resolved = "source-record"
        entities = lineage.entities_of_source_record(engine, ref.source, ref.entity_type, ref.source_id)  # type: ignore[arg-type]
        source_records.append((ref.source, ref.entity_type, ref.source_id))  # type: ignore[arg-type]
    elif entities := lineage.entities_with_id(engine, ref.text):
        resolved = "entity"
    else:
        entities = lineage.entities_of_trace(engine, ref.text)
        raw_docs = raw_store.find_by_trace_id(ref.text)
        resolved = "trace-id" if entities or raw_docs else "unknown"
        trace_ids.add(ref.text)
        source_records += [(d["sourceSystem"], d["entityType"], d["sourceId"]) for d in raw_docs]
    if not ref.is_source_record:
        for et, eid in entities:
            source_records += [(s, et, i) for s, i in lineage.source_records_of(engine, (et, eid))]
    source_records = list(dict.fromkeys(source_records))

    versions = {key: lineage.versions_of(engine, key) for key in entities}
    states = {key: lineage.target_states_of(engine, key) for key in entities}
    seen_docs = {d["_id"] for d in raw_docs}
    for s, et, i in source_records:
        key = RawKey(s, et, i)
        if key.doc_id not in seen_docs and (doc := raw_store.find_one(key)) is not None:
            raw_docs.append(doc)
            seen_docs.add(key.doc_id)

    # -- the Kafka side: which topics, what each is, the keys to look for --------------------
    roles: dict[str, TopicRole] = {}
    in_topics = SyncInTopics.from_settings(settings)
    raw_topic_of = {src: topic for topic, src in in_topics.raw.items()}
    for s, _, _ in source_records:
        if s in raw_topic_of:
            roles[raw_topic_of[s]] = TopicRole("raw")
    roles[in_topics.dlq] = TopicRole("sync-in-dlq")
    types = {et for et, _ in entities} | {et for _, et, _ in source_records}
    for et in sorted(types):
        roles[in_topics.changes(et)] = TopicRole("changes")
    targets = [name for name, t in settings.sync_out.targets.items() if types & set(t.entity_types)]
    for name in targets:
        topics = sync_out_topics(settings, name)
        for n, topic in enumerate(topics.tiers, 1):
            roles[topic] = TopicRole("retry", name, n)
        roles[topics.dependency] = TopicRole("dependency", name)
        roles[topics.dlq] = TopicRole("dlq", name)
    keys = {f"{et}:{i}".encode() for _, et, i in source_records} | {eid.encode() for _, eid in entities}
    scan = scan_for(settings, roles, keys=keys, trace_ids=trace_ids, per_partition=per_partition)

    trace = Trace(ref.text, resolved)
    trace.raw_documents = [_raw_document_summary(d) for d in raw_docs]
    trace.scan = {"per_partition": per_partition, "records_read": scan.scanned, "older_not_read": scan.not_scanned,
                  "missing_topics": scan.missing_topics}
    _assemble(trace, scan, roles, entities, versions, states, decode)
    return trace


def _decoded_version(record: KafkaRecord, decode: Decode | None) -> int | None:
    if decode is None or record.value is None:
        return None
    try:
        return int(decode(record.value, record.topic)["version"])
    except Exception:  # noqa: BLE001 - an undecodable value is shown without its version
        return None


def _assemble(trace: Trace, scan: ScanResult, roles: dict[str, TopicRole], entities: list[lineage.EntityKey],
              versions: dict[lineage.EntityKey, list[lineage.VersionRow]],
              states: dict[lineage.EntityKey, list[lineage.TargetStateRow]], decode: Decode | None) -> None:
    timeline: list[tuple[int, str, str, dict[str, Any]]] = []

    def note(ms: int | None, stage: str, what: str, **details: Any) -> None:
        if ms is not None:
            timeline.append((ms, stage, what, details))

    for d in trace.raw_documents:
        who = f"{d['source']}:{d['entity_type']}:{d['source_id']}"
        note(_ms(datetime.fromisoformat(d["written_at"])) if d["written_at"] else None, "raw store",
             f"raw document {who}: inbound {d['inbound']}" + (f", made version {d['version']}" if d["version"] else ""),
             trace_id=d["trace_id"], outbound=d["outbound"])
        for e in d["errors"]:
            note(_ms(datetime.fromisoformat(e["at"])) if e["at"] else None, "raw store", f"raw document {who} failed: {e['error']}")

    by_entity: dict[str, list[KafkaRecord]] = {}
    for r in scan.records:
        role = roles.get(r.topic)
        if role is None:
            continue
        if role.kind == "raw":
            place = {**_record_place(r), "key": (r.key or b"").decode(errors="replace")}
            trace.raw_records.append(place)
            note(r.timestamp_ms, "source", f"raw record {place['key']} on {r.topic} p{r.partition}@{r.offset}",
                 trace_id=place["trace_id"])
        elif role.kind == "sync-in-dlq":
            f = _failure(r)
            trace.sync_in_dlq.append({**_record_place(r), "key": (r.key or b"").decode(errors="replace"),
                                      **{k: v for k, v in f.items() if not k.startswith("_")}})
            note(f["_failed_ms"], "sync-in", f"dead-lettered to {r.topic} p{r.partition}@{r.offset}: "
                 f"{f['category']}: {f['message']}", trace_id=header_value(r.headers, TRACE_ID))
        else:
            by_entity.setdefault((r.key or b"").decode(errors="replace"), []).append(r)

    for key in entities:
        et, eid = key
        made_by: dict[str | None, dict[str, Any]] = {}
        for raw in trace.raw_records:
            made_by.setdefault(raw["trace_id"], raw)
        entity_versions = []
        for v in versions.get(key, []):
            raw = made_by.get(v.trace_id) if v.trace_id else None
            entity_versions.append({**v.to_dict(), "idempotency_key": f"{eid}:{v.version}",
                                    "made_by": {"source_record": f"{v.source_system}:{et}:{v.source_id}",
                                                "trace_id": v.trace_id,
                                                "raw_record": {k: raw[k] for k in ("topic", "partition", "offset")} if raw else None}})
            note(_ms(v.created_at), "sync-in", f"version {v.version} ({v.change_type}) of {et} {eid}: "
                 f"{', '.join(v.changed_fields) or 'no field'} changed", hash=v.data_hash, trace_id=v.trace_id,
                 made_by=f"{v.source_system}:{et}:{v.source_id}")
            if v.published_at is not None:
                note(_ms(v.published_at), "outbox", f"version {v.version} marked published")
        events: list[dict[str, Any]] = []
        target_view: dict[str, dict[str, Any]] = {}
        for s in states.get(key, []):
            target_view[s.target] = {
                "target": s.target, "sent_version": s.sent_version, "applied_version": s.synced_version,
                "status": s.status, "attempts": s.attempts, "next_retry_time": s.next_retry_time.isoformat() if s.next_retry_time else None,
                "last_error": s.last_error, "target_ref": s.target_ref, "updated_at": s.updated_at.isoformat(),
                "idempotency_key": f"{eid}:{s.sent_version}" if s.sent_version else None, "retries": [], "dlq": [],
            }  # fmt: skip
            what = f"{s.target}: applied v{s.synced_version}, sent v{s.sent_version}, {s.status}"
            if s.target_ref:
                what += f" (target id {s.target_ref})"
            note(_ms(s.updated_at), "target", what, idempotency_key=target_view[s.target]["idempotency_key"])
        for r in by_entity.get(eid, []):
            role = roles[r.topic]
            version = _decoded_version(r, decode)
            if role.kind == "changes":
                events.append({**_record_place(r), "version": version, "published_at": _iso(r.timestamp_ms)})
                note(r.timestamp_ms, "change event", f"v{version if version is not None else '?'} on {r.topic} "
                     f"p{r.partition}@{r.offset}", trace_id=header_value(r.headers, TRACE_ID))
                continue
            f = _failure(r)
            view = target_view.setdefault(role.target or "?", {"target": role.target, "retries": [], "dlq": []})
            entry = {**_record_place(r), "version": version, "idempotency_key": f"{eid}:{version}" if version else None,
                     **{k: v for k, v in f.items() if not k.startswith("_")}}
            if role.kind == "dlq":
                view["dlq"].append(entry)
                note(f["_failed_ms"], "target", f"{role.target}: v{version} attempt {f['attempt']} → DLQ {r.topic} "
                     f"p{r.partition}@{r.offset}: {f['category']}: {f['message']}", http_status=f["http_status"])
            else:
                entry["retry_tier"] = role.tier if role.kind == "retry" else "dependency"
                view["retries"].append(entry)
                lane = f"retry tier {role.tier}" if role.kind == "retry" else "the dependency lane"
                note(f["_failed_ms"], "target", f"{role.target}: v{version} attempt {f['attempt']} failed → {lane}: "
                     f"{f['category']}: {f['message']}", http_status=f["http_status"])
        trace.entities.append({"entity_type": et, "entity_id": eid, "versions": entity_versions,
                               "change_events": events, "targets": list(target_view.values())})
    timeline.sort(key=lambda t: t[0])
    trace.timeline = [{"at": _iso(ms), "stage": stage, "what": what, **{k: v for k, v in d.items() if v not in (None, {}, "")}}
                      for ms, stage, what, d in timeline]
