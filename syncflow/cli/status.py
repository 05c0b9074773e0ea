"""`syncflow status`: counts per sync status, consumer lag, DLQ depth, outbox backlog."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine

from syncflow.streams.admin import admin_client
from syncflow.ops.status import StatusReport, collect_status, pause_status
from syncflow.sinks.common_db.engine import make_engine
from syncflow.settings import get_settings

app = typer.Typer(help="Where records are: sync status counts, lag per group, DLQ depth.")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def print_pauses(pauses: list[dict[str, object]]) -> None:
    console = Console()
    if not pauses:
        console.print("pauses: none")
        return
    table = Table("side", "target/source", "property", "entity type", "since", "for", "by", "reason",
                  "held (≈ group lag)", title="pauses")
    for p in pauses:
        held = p["held_approx"]
        table.add_row(str(p["side"]), str(p["system"]), str(p["property"] or "(all)"), str(p["entity_type"] or "(all)"),
                      str(p["since"] or ""), _age(p["age_s"]), str(p["paused_by"]), str(p["reason"]),  # type: ignore[arg-type]
                      "?" if held is None else str(held))
    console.print(table)


def collect_pauses(settings: object, admin: object) -> list[dict[str, object]] | None:
    """Every pause with its age and held records; None when the pauses table is not there."""
    engine = make_engine(settings, pool_size=1)  # type: ignore[arg-type]
    try:
        return pause_status(engine, settings, admin)
    except Exception:  # noqa: BLE001 - no table yet (migrations not run): nothing paused
        return None
    finally:
        engine.dispose()


def print_report(report: StatusReport, schema: str) -> None:
    console = Console()
    if report.missing_tables:
        console.print(f"[yellow]common database: schema {schema!r} has no table {', '.join(report.missing_tables)} "
                      "yet (run the migrations); no sync counts[/]")
    else:
        table = Table("side", "entity type", "source/target", "status", "count", "oldest pending", title="sync status")
        for c in report.counts:
            table.add_row(c.side, c.entity_type, c.system, c.status, str(c.count), _age(c.oldest_age_s))
        console.print(table)
        if report.unpublished_versions is not None:
            console.print(f"versions waiting for their change event (outbox): {report.unpublished_versions}")
        if report.parked:
            parked = Table("target", "records", "oldest", title="parked for a reference (sent again once it arrives)")
            for p in report.parked:
                parked.add_row(p.target, str(p.count), _age(p.oldest_age_s))
            console.print(parked)
    lag = Table("consumer group", "lag", "partitions", title="consumer lag")
    for g in report.lag:
        lag.add_row(g.group, str(g.lag), str(g.partitions))
    console.print(lag)
    dlq = Table("DLQ topic", "records", "not redriven yet", title="dead-letter queues")
    for topic, depth in report.dlq_depth.items():
        dlq.add_row(topic, str(depth), str(report.dlq_not_redriven.get(topic, "")))
    console.print(dlq)


@app.callback(invoke_without_command=True)
def main(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Counts by status per entity type and source/target, lag per consumer group, DLQ depth."""
    settings = get_settings()
    engine = create_engine(settings.database_url, connect_args={"connect_timeout": 5})
    try:
        admin = admin_client(settings)
        report = collect_status(settings, engine, admin)
        pauses = collect_pauses(settings, admin)
    except Exception as exc:  # noqa: BLE001 - a status command reports, it does not trace back
        typer.echo(f"status: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "pauses": pauses or []}, indent=2))
    else:
        print_report(report, settings.database_schema)
        print_pauses(pauses or [])
