"""`syncflow replay`: reset a consumer group's offsets so its workers re-read records."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from syncflow.errors import OpsError
from syncflow.streams.admin import admin_client
from syncflow.ops.progress import progress_report
from syncflow.ops.replay import ReplayResult, ResetTo, replay
from syncflow.ops.times import parse_time
from syncflow.settings import get_settings

app = typer.Typer(help="Reset a consumer group's offsets (earliest / latest / offset / time).")


def reset_from_options(earliest: bool, latest: bool, offset: int | None, time: str | None) -> ResetTo:
    chosen = [c for c in (earliest, latest, offset is not None, time is not None) if c]
    if len(chosen) != 1:
        raise OpsError("choose exactly one of --to-earliest, --to-latest, --to-offset, --to-time")
    if earliest:
        return ResetTo("earliest")
    if latest:
        return ResetTo("latest")
    if offset is not None:
        return ResetTo("offset", offset)
    return ResetTo("time", parse_time(time or ""))


def print_result(result: ReplayResult) -> None:
    console = Console()
    verb = "reset" if result.applied else "dry run, nothing changed"
    console.print(f"group [bold]{result.group}[/] ({result.state.state}, {result.state.members} member(s)) "
                  f"-> {result.reset.describe()}: {verb}")
    table = Table("topic", "partition", "current", "new", "low", "high", "re-read", "skip")
    for p in result.plans:
        table.add_row(p.topic, str(p.partition), "-" if p.current is None else str(p.current), str(p.new),
                      str(p.low), str(p.high), str(p.rereads), str(p.skips))
    console.print(table)
    console.print(f"records to re-read: {sum(p.rereads for p in result.plans)}")


@app.callback(invoke_without_command=True)
def main(
    group: str = typer.Option(..., "--group", "-g", help="Consumer group, e.g. sync-in or sync-out.one."),
    topics: list[str] = typer.Option(..., "--topic", "-t", help="Topic to reset (repeatable)."),
    partitions: list[int] = typer.Option(None, "--partition", "-p", help="Only these partitions (repeatable)."),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="The oldest record still stored."),
    to_latest: bool = typer.Option(False, "--to-latest", help="The end: skip everything not read yet."),
    to_offset: int | None = typer.Option(None, "--to-offset", help="This offset on every chosen partition."),
    to_time: str | None = typer.Option(None, "--to-time", help="First record at/after an ISO-8601 time (UTC) or epoch ms."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show current and new offsets; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Refused while the group has active members: stop its workers first (scale to 0)."""
    try:
        reset = reset_from_options(to_earliest, to_latest, to_offset, to_time)
        settings = get_settings()
        with progress_report(f"replay {group}", Console(stderr=True), settings.ops.progress_interval_s) as progress:
            result = replay(admin_client(settings), group, topics, reset, partitions=partitions or None, dry_run=dry_run,
                            on_step=lambda text: progress.update(status=text))
    except OpsError as exc:
        typer.echo(f"replay: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result)
