"""`syncflow pause` / `syncflow resume`: hold a target's deliveries (sync-out) or a source's
records (sync-in), whole or for one property and/or entity type, until resumed. The state
is the common database's `pauses` table; workers honour a change within
`ops.pause_refresh_s` (docs/operations.md, runbook "pause and resume")."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from syncflow.sinks.common_db.pauses import PauseScope, list_pauses, pause, resume
from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.settings import Settings, get_settings
from syncflow.streams.topics import ENTITY_TYPES, SOURCES

TARGET = typer.Option(None, "--target", help="A sync-out target (its deliveries are held).")
SOURCE = typer.Option(None, "--source", help="A source (sync-in holds its raw records).")
PROPERTY = typer.Option(None, "--property", help="Only records of this property code.")
ENTITY = typer.Option(None, "--entity-type", help="Only this entity type.")


def _scope(settings: Settings, target: str | None, source: str | None, entity_type: str | None) -> tuple[str, str]:
    if (target is None) == (source is None):
        raise typer.BadParameter("give exactly one of --target or --source")
    if entity_type is not None and entity_type not in ENTITY_TYPES:
        raise typer.BadParameter(f"--entity-type must be one of {', '.join(ENTITY_TYPES)}")
    if target is not None:
        if target not in settings.sync_out.targets:
            raise typer.BadParameter(f"unknown target {target!r} (configured: {', '.join(settings.sync_out.targets)})")
        return "sync-out", target
    if source not in SOURCES:
        raise typer.BadParameter(f"unknown source {source!r} (one of {', '.join(SOURCES)})")
    return "sync-in", str(source)


def print_pauses(scopes: list[PauseScope]) -> None:
    table = Table("side", "target/source", "property", "entity type", "since", "by", "reason", title="pauses")
    for s in scopes:
        table.add_row(s.side, s.system, s.prop or "(all)", s.entity_type or "(all)",
                      s.since.isoformat(timespec="seconds") if s.since else "", s.paused_by, s.reason)
    Console().print(table)


def pause_command(
    target: str | None = TARGET,
    source: str | None = SOURCE,
    prop: str | None = PROPERTY,
    entity_type: str | None = ENTITY,
    reason: str = typer.Option("", "--reason", help="Why (shown by `syncflow status`)."),
    by: str | None = typer.Option(None, "--by", help="Who pauses (default: user@host)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Pause a target or a source (optionally one property / entity type); with neither, list the pauses."""
    settings = get_settings()
    migrate(settings)
    engine = make_engine(settings, pool_size=1)
    try:
        if target is None and source is None and prop is None and entity_type is None:
            scopes = list_pauses(engine)
            typer.echo(json.dumps([s.to_dict() for s in scopes], indent=2)) if as_json else print_pauses(scopes)
            return
        side, system = _scope(settings, target, source, entity_type)
        scope, new = pause(engine, side, system, prop=prop, entity_type=entity_type, reason=reason, by=by)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({**scope.to_dict(), "new": new}, indent=2))
    else:
        typer.echo(f"paused {scope.describe()}" + ("" if new else " (already paused; reason updated)")
                   + f" since {scope.since:%Y-%m-%d %H:%M:%S %Z}; workers hold its records within "
                   f"{settings.ops.pause_refresh_s:g} s")


def resume_command(
    target: str | None = TARGET,
    source: str | None = SOURCE,
    prop: str | None = PROPERTY,
    entity_type: str | None = ENTITY,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Lift the pause of exactly this scope; held records then go out in version order."""
    settings = get_settings()
    migrate(settings)
    side, system = _scope(settings, target, source, entity_type)
    engine = make_engine(settings, pool_size=1)
    try:
        removed = resume(engine, side, system, prop=prop, entity_type=entity_type)
        still = list_pauses(engine, side, system)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"resumed": removed.to_dict() if removed else None,
                               "still_paused": [s.to_dict() for s in still]}, indent=2))
    elif removed is None:
        typer.echo(f"{side} {system}: no such pause (nothing changed)", err=True)
    else:
        typer.echo(f"resumed {removed.describe()} (paused since {removed.since:%Y-%m-%d %H:%M:%S %Z})")
    if not as_json and still:
        typer.echo("still paused: " + "; ".join(s.describe() for s in still))
    if removed is None:
        raise typer.Exit(1)
