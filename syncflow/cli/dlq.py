"""`syncflow dlq list|show|redrive`: read the dead-letter topics and send records back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from syncflow.errors import OpsError
from syncflow.ops.dead_letter_queue import AuditLog, DlqFilter, describe_value, find_record, read_dlq, redrive
from syncflow.ops.progress import progress_report
from syncflow.ops.times import parse_time
from syncflow.settings import Settings, get_settings
from syncflow.streams.topics import SYNC_IN_DLQ, target_dlq

app = typer.Typer(no_args_is_help=True, help="Inspect dead-letter topics and redrive their records.")

TOPIC_HELP = "DLQ topic (default: sync-out.<target>.dlq with --target, else sync-in.dlq)."


def _topic(topic: str | None, target: str | None) -> str:
    settings = get_settings()
    if topic:
        return topic
    return target_dlq(target) + settings.sync_out.topic_suffix if target else SYNC_IN_DLQ + settings.sync_in.topic_suffix


def _filter(target: str | None, category: str | None, entity_type: str | None, since: str | None, until: str | None) -> DlqFilter:
    return DlqFilter(target, category, entity_type, parse_time(since) if since else None, parse_time(until) if until else None)


def _fail(command: str, exc: Exception) -> typer.Exit:
    typer.echo(f"dlq {command}: {exc}", err=True)
    return typer.Exit(1)


def _decoder(settings: Settings):  # -> Callable[[bytes], tuple[str, dict]] | None
    """The Avro codec's decode, when the codec can be built; show falls back to text/hex."""
    try:
        from syncflow.streams.avro import codec_for

        codec = codec_for(settings)
    except Exception:  # noqa: BLE001 - no codec: values are shown as text or hex
        return None

    def decode(value: bytes) -> tuple[str, dict]:
        decoded = codec.decode(value)
        return decoded.schema_name, decoded.record

    return decode


@app.command("list")
def list_(
    topic: str | None = typer.Argument(None, help=TOPIC_HELP),
    target: str | None = typer.Option(None, help="Only records that failed for this target."),
    category: str | None = typer.Option(None, help="Only this error category (e.g. validation, permanent)."),
    entity_type: str | None = typer.Option(None, "--entity-type", help="Only this entity type."),
    since: str | None = typer.Option(None, help="Failed at or after (ISO-8601 UTC or epoch ms)."),
    until: str | None = typer.Option(None, help="Failed before (ISO-8601 UTC or epoch ms)."),
    limit: int | None = typer.Option(None, help="At most this many records."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array of record summaries."),
) -> None:
    """List records of a DLQ, oldest first, with why they failed (commits nothing)."""
    try:
        records = read_dlq(get_settings(), _topic(topic, target), _filter(target, category, entity_type, since, until), limit)
    except OpsError as exc:
        raise _fail("list", exc) from exc
    if as_json:
        typer.echo(json.dumps([r.summary() for r in records], indent=2))
        return
    table = Table("partition", "offset", "failed at", "original topic", "entity", "category", "redrives", "message")
    for r in records:
        s = r.summary()
        table.add_row(str(r.partition), str(r.offset), str(s["failed_at"]), str(r.original_topic), str(r.entity_type),
                      str(r.category), str(r.redrive_count), str(s["message"] or "")[:80])
    Console().print(table)
    typer.echo(f"{len(records)} record(s)")


@app.command()
def show(
    topic: str = typer.Argument(..., help="DLQ topic."),
    partition: int = typer.Option(..., "--partition", "-p"),
    offset: int = typer.Option(..., "--offset", "-o"),
    as_json: bool = typer.Option(False, "--json", help="Headers and value as JSON."),
) -> None:
    """One record: its failure headers, its other headers and its value (Avro decoded)."""
    settings = get_settings()
    try:
        record = find_record(settings, topic, partition, offset)
    except OpsError as exc:
        raise _fail("show", exc) from exc
    kind, value = describe_value(record.value, _decoder(settings))
    other = {k: v.decode(errors="replace") if v is not None else None for k, v in record.headers if not k.startswith("syncflow.dlt.")}
    if as_json:
        typer.echo(json.dumps({**record.summary(), "failure": record.failure, "headers": other,
                               "value_kind": kind, "value": value}, indent=2))
        return
    console = Console()
    console.print(f"[bold]{topic}[/] partition {partition} offset {offset}, key {record.summary()['key']!r}")
    table = Table("failure header", "value")
    for k, v in record.failure.items():
        table.add_row(k, v)
    console.print(table)
    if other:
        headers = Table("header", "value")
        for k, v in other.items():
            headers.add_row(k, "(null)" if v is None else v)
        console.print(headers)
    console.print(f"value ({kind}):")
    console.print(value, markup=False, highlight=False)


@app.command("redrive")
def redrive_(
    topic: str | None = typer.Argument(None, help=TOPIC_HELP),
    target: str | None = typer.Option(None, help="Only records that failed for this target."),
    category: str | None = typer.Option(None, help="Only this error category."),
    entity_type: str | None = typer.Option(None, "--entity-type", help="Only this entity type."),
    since: str | None = typer.Option(None, help="Failed at or after (ISO-8601 UTC or epoch ms)."),
    until: str | None = typer.Option(None, help="Failed before (ISO-8601 UTC or epoch ms)."),
    to_topic: str | None = typer.Option(None, "--to-topic", help="Send here instead of original.topic "
                                        "(e.g. sync-out.<target>.retry.1: only that target re-reads them)."),
    max_redrives: int | None = typer.Option(None, help="Loop guard (default settings ops.max_redrives)."),
    audit_file: Path | None = typer.Option(None, help="JSON-lines audit file (default settings ops.audit_file)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be redriven; send nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (audit lines go to stderr)."),
) -> None:
    """Send records back to their original topic, once each. Records that cannot go back
    (redriven too often, no or unreadable failure headers, original topic gone, tombstone,
    refused by the broker) stay parked and are reported with the reason, and the rest still
    go (exit code 3 when any record is parked)."""
    settings = get_settings()
    echo = (lambda line: print(line, file=sys.stderr)) if as_json else print
    audit = AuditLog(audit_file or settings.ops.audit_file, echo=echo)
    try:
        with progress_report("redrive", Console(stderr=True), settings.ops.progress_interval_s) as progress:
            report = redrive(
                settings, _topic(topic, target), _filter(target, category, entity_type, since, until),
                audit=audit, max_redrives=max_redrives, dry_run=dry_run, to_topic=to_topic,
                on_progress=lambda done, total: progress.update(done=done, total=total),
            )  # fmt: skip
    except OpsError as exc:
        raise _fail("redrive", exc) from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for p in report.parked:
            typer.echo(f"parked {p['topic']}[{p['partition']}]@{p['offset']} key {p['key']!r}: {p['reason']}")
        typer.echo(f"redriven {len(report.redriven)}, parked {len(report.parked)}, "
                   f"skipped by filter {report.skipped}, handled before {report.already_done}")
    if report.parked:
        raise typer.Exit(3)
