"""`syncflow trace <ref>`: one record's whole path, as a timeline (rich) or JSON."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from syncflow.ops.trace import Trace, build_trace
from syncflow.settings import Settings, get_settings

REF_HELP = ("<source>:<entity_type>:<source_id> (e.g. yardi:location:U-101), a canonical entity id "
            "(e.g. loc-…), or a trace id.")


def _decoder(settings: Settings):  # -> Callable[[bytes, str], dict] | None
    try:
        from syncflow.streams.avro import codec_for

        codec = codec_for(settings)
    except Exception:  # noqa: BLE001 - without a codec, events are shown without their version
        return None
    return lambda value, topic: codec.decode(value, topic=topic).record


def collect(settings: Settings, ref: str, per_partition: int) -> Trace:
    from syncflow.sinks.common_db.engine import make_engine
    from syncflow.sinks.raw_store import RawRecordStore

    engine = make_engine(settings, pool_size=1)
    raw_store = RawRecordStore(settings)
    try:
        return build_trace(settings, ref, engine=engine, raw_store=raw_store, decode=_decoder(settings),
                           per_partition=per_partition)
    finally:
        raw_store.close()
        engine.dispose()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def print_trace(trace: Trace, console: Console) -> None:
    console.print(f"[bold]trace[/] {trace.ref}  ([italic]{trace.resolved_as}[/])")
    if trace.raw_documents:
        t = Table("source record", "inbound", "version", "trace id", "written", "outbound", "errors", title="raw documents")
        for d in trace.raw_documents:
            t.add_row(f"{d['source']}:{d['entity_type']}:{d['source_id']}", _text(d["inbound"]), _text(d["version"]),
                      _text(d["trace_id"]), _text(d["written_at"]),
                      ", ".join(f"{k}={v}" for k, v in d["outbound"].items()),
                      "\n".join(_text(e["error"])[:120] for e in d["errors"]))
        console.print(t)
    for e in trace.entities:
        console.print(f"\n[bold]{e['entity_type']} {e['entity_id']}[/]")
        t = Table("version", "change", "changed fields", "hash", "created", "published", "made by", title="versions")
        for v in e["versions"]:
            raw = v["made_by"]["raw_record"]
            made = v["made_by"]["source_record"] + (f"\n{raw['topic']} p{raw['partition']}@{raw['offset']}" if raw else "")
            made += f"\ntrace {v['trace_id']}" if v["trace_id"] else ""
            t.add_row(str(v["version"]), v["change_type"], ", ".join(v["changed_fields"])[:80], v["hash"][:12],
                      _text(v["created_at"]), _text(v["published_at"]), made)
        console.print(t)
        if e["change_events"]:
            t = Table("topic", "partition", "offset", "version", "published at", "trace id", title="change events")
            for c in e["change_events"]:
                t.add_row(c["topic"], str(c["partition"]), str(c["offset"]), _text(c["version"]), _text(c["published_at"]),
                          _text(c["trace_id"]))
            console.print(t)
        if e["targets"]:
            t = Table("target", "sent", "applied", "status", "attempts", "idempotency key", "retries", "DLQ", title="targets")
            for s in e["targets"]:
                retries = "\n".join(f"tier {r['retry_tier']} v{r['version']} #{r['attempt']}: {r['category']} {_text(r['message'])[:60]}"
                                    for r in s["retries"])
                dlq = "\n".join(f"{d['topic']} p{d['partition']}@{d['offset']} v{d['version']}: {d['category']} "
                                f"{_text(d['message'])[:60]}" for d in s["dlq"])
                t.add_row(_text(s["target"]), _text(s.get("sent_version")), _text(s.get("applied_version")),
                          _text(s.get("status")), _text(s.get("attempts")), _text(s.get("idempotency_key")), retries, dlq)
            console.print(t)
    if trace.sync_in_dlq:
        t = Table("topic", "partition", "offset", "key", "category", "message", title="sync-in DLQ")
        for d in trace.sync_in_dlq:
            t.add_row(d["topic"], str(d["partition"]), str(d["offset"]), d["key"], _text(d["category"]), _text(d["message"])[:100])
        console.print(t)
    t = Table("at", "stage", "what", title="timeline")
    for entry in trace.timeline:
        t.add_row(_text(entry["at"]), entry["stage"], entry["what"])
    console.print(t)
    unread = {k: v for k, v in trace.scan.get("older_not_read", {}).items() if v}
    if unread:
        console.print(f"[yellow]older records not scanned (--scan {trace.scan['per_partition']} per partition): "
                      + ", ".join(f"{k}: {v}" for k, v in unread.items()))


def trace(
    ref: str = typer.Argument(..., help=REF_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the trace as JSON."),
    scan: int = typer.Option(5000, "--scan", min=0, help="Kafka records read per partition, newest first."),
) -> None:
    """One record's whole path: raw document(s), versions, change events, per-target deliveries,
    retries and DLQ entries, as a timeline. Exits 1 when nothing is known about REF."""
    settings = get_settings()
    try:
        result = collect(settings, ref, scan)
    except Exception as exc:  # noqa: BLE001 - an operations command reports, it does not trace back
        typer.echo(f"trace: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_trace(result, Console(width=200))
    if not result.found:
        typer.echo(f"trace: nothing known about {ref!r}", err=True)
        raise typer.Exit(1)
