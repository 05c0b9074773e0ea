"""`syncflow reconcile`: compare what a target holds with the common database (anti-entropy),
optionally heal the drift, once or on a schedule exposing the drift as metrics."""

from __future__ import annotations

import asyncio
import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from syncflow.errors import OpsError
from syncflow.ops.dead_letter_queue import AuditLog
from syncflow.ops.reconcile import KINDS, ReconcileReport, reconcile, run_every, serve_metrics
from syncflow.ops.resync import audit_file
from syncflow.settings import get_settings

SAMPLE = 20


def _print(report: ReconcileReport, console: Console) -> None:
    counts = report.counts()
    console.print(f"[bold]{report.target}[/]: {report.compared} entities compared, {report.target_records} target records "
                  f"read in {report.reads} calls ({report.elapsed_s:.1f}s, {report.rate_wait_s:.1f}s waiting for the rate limit); "
                  f"{report.echoes} echoes not compared")
    console.print("drift: " + ", ".join(f"{k} {counts[k]}" for k in KINDS))
    if report.drift:
        table = Table(title=f"sample ({min(SAMPLE, len(report.drift))} of {len(report.drift)}; --json for all)")
        table.add_column("kind")
        table.add_column("entity", no_wrap=True)  # ids are what the operator copies: never cut
        for name in ("version", "target version", "sync-out", "reason"):
            table.add_column(name)
        for d in report.drift[:SAMPLE]:
            table.add_row(d.kind, f"{d.entity_type}:{d.entity_id}", str(d.version or "-"), str(d.target_version or "-"),
                          str(d.sync_status or "-"), d.reason)
        console.print(table)
    if report.resend_id:
        console.print(f"healed {len(report.healed)} (resend {report.resend_id}, through {report.healed[0]['topic'] if report.healed else '-'}), "
                      f"not healed {len(report.not_healed)}")
        for n in report.not_healed[:SAMPLE]:
            console.print(f"  not healed {n['entity_type']}:{n['entity_id']}: {n['why']}")


def reconcile_command(
    target: str = typer.Option(..., "--target", help="The target to reconcile (one, lessen360, ...)."),
    property_code: str | None = typer.Option(None, "--property", help="Only entities of this property code."),
    entity_type: str | None = typer.Option(None, "--entity-type", help="Only this entity type."),
    heal: bool = typer.Option(False, "--heal", help="Resend the latest version of each drifted entity through sync-out."),
    as_json: bool = typer.Option(False, "--json", help="The whole report as JSON (every drifted entity)."),
    every: float | None = typer.Option(None, "--every", help="Run every this many seconds, until stopped (scheduled mode)."),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Scheduled mode: serve syncflow_reconcile_drift{target,kind} here."),
    page_size: int = typer.Option(500, "--page-size", help="Records per read of the target."),
) -> None:
    """Compare what TARGET holds with the latest versions in the common database: missing,
    stale (older version, or same version with other content) and extra records. Dry-run
    unless --heal. Reads share the target's rate limit with its sync-out workers."""
    settings = get_settings()
    console = Console(stderr=as_json)
    audit = AuditLog(audit_file(settings), echo=None)

    def show(report: ReconcileReport) -> None:
        if report.resend_id:
            audit.write({"action": "heal", "target": report.target, "selection": report.selection.to_dict(),
                         "counts": report.counts(), "healed": len(report.healed), "not_healed": len(report.not_healed),
                         "resend_id": report.resend_id})
        if as_json:
            typer.echo(json.dumps(report.to_dict(), default=str))
        else:
            _print(report, console)

    try:
        if every is not None:
            _, gauges = serve_metrics(settings, target, metrics_port)
            if metrics_port:
                print(f"reconcile {target}: every {every:g}s, metrics on {settings.http_host}:{metrics_port}/metrics", file=sys.stderr)
            asyncio.run(run_every(settings, target, every, gauges, entity_type=entity_type, property_code=property_code,
                                  heal_drift=heal, on_report=show))
            return
        report = asyncio.run(reconcile(settings, target, entity_type=entity_type, property_code=property_code,
                                       heal_drift=heal, page_size=page_size))
    except OpsError as exc:
        typer.echo(f"reconcile: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    show(report)
    if report.drift and not heal:
        raise typer.Exit(3)
