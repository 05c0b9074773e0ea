"""`syncflow resync`: re-emit the current version of selected entities to one target."""

from __future__ import annotations

import asyncio
import json
import sys

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from syncflow.errors import OpsError
from syncflow.ops.dead_letter_queue import AuditLog
from syncflow.ops.times import parse_moment
from syncflow.ops.resync import ResyncReport, audit_file, resync
from syncflow.settings import get_settings


def _ids(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(i.strip() for v in values for i in v.split(",") if i.strip())


def _value(v: object) -> str:
    return json.dumps(v, default=str) if not isinstance(v, str) else repr(v)


def _print(report: ResyncReport) -> None:
    verb = "would send" if report.dry_run else "sent"
    for e in report.entities:
        print(f"{verb} {e['entity_type']}:{e['entity_id']} v{e['version']} ({e['op']} {e['resource']}), "
              f"sync-out {e['sync_status'] or '-'}" + (f"; target: {e['target']}" if "target" in e else "")
              + (f" v{e['target_version']}" if e.get("target_version") else ""))
        for d in e.get("diff", []):
            print(f"    {d['field']}: target {_value(d['target'])} -> syncflow {_value(d['syncflow'])}")
    for s in report.skipped:
        print(f"skipped {s['entity_type']}:{s['entity_id']} v{s['version']}: {s['why']}")
    for i in report.missing_ids:
        print(f"unknown id {i}: no such entity of the selected types")
    summary = report.summary()
    where = f" to {report.topic} (resend {report.resend_id})" if report.topic else ""
    print(f"resync {report.target}{' (dry run)' if report.dry_run else ''}: selected {summary['selected']}, "
          f"{verb} {len(report.entities)}{where}, skipped {len(report.skipped)}, unknown ids {len(report.missing_ids)}")


def resync_command(
    target: str = typer.Option(..., "--target", help="The target to resync (one, lessen360, ...)."),
    property_code: str | None = typer.Option(None, "--property", help="Only entities of this property code."),
    entity_type: str | None = typer.Option(None, "--entity-type", help="Only this entity type."),
    since: str | None = typer.Option(None, "--since", help="Only entities whose latest version was committed at or after (ISO-8601 UTC or epoch ms)."),
    ids: list[str] | None = typer.Option(None, "--ids", help="Only these entity ids (repeat, or comma-separated)."),
    dry_run: bool = typer.Option(True, "--dry-run/--no-dry-run", help="Dry run (default): show what would be sent and the diff at the target."),
    diff: bool = typer.Option(True, "--diff/--no-diff", help="Dry run: read each entity from the target for a field-level diff."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
) -> None:
    """Re-emit the current version of the selected entities to TARGET through its sync-out
    workers (sync-out.<target>.retry.1), even where the target is recorded as holding it.
    Every run writes one audit line (resync.jsonl beside the DLQ audit file)."""
    settings = get_settings()
    try:
        since_at = parse_moment(since)
        tty = sys.stdout.isatty() and not as_json

        if tty:
            progress = Progress(TextColumn("resync"), BarColumn(), MofNCompleteColumn(), console=Console())
            task = progress.add_task("resync", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            with progress:
                report = asyncio.run(resync(settings, target, entity_type=entity_type, property_code=property_code, since=since_at,
                                            ids=_ids(ids), dry_run=dry_run, diff=diff, on_progress=on_progress))
        else:
            step = {"last": 0}

            def on_progress(done: int, total: int) -> None:  # plain lines: every 10 % and the last
                if done == total or done - step["last"] >= max(1, total // 10):
                    step["last"] = done
                    print(f"resync {target}: {done}/{total}", file=sys.stderr)

            report = asyncio.run(resync(settings, target, entity_type=entity_type, property_code=property_code, since=since_at,
                                        ids=_ids(ids), dry_run=dry_run, diff=diff, on_progress=on_progress))
    except OpsError as exc:
        typer.echo(f"resync: {exc}", err=True)
        raise typer.Exit(1) from exc
    AuditLog(audit_file(settings), echo=None).write(report.summary())
    if as_json:
        typer.echo(json.dumps(report.to_dict(), default=str))
    else:
        _print(report)
