"""`syncflow sources …`: bulk import, the source emulators, a source connector, the push
ingest API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from syncflow.connectors.bulk_import import count_rows, import_file
from syncflow.connectors.schemas import SOURCE_ENTITIES
from syncflow.emulators.sources.runner import serve_all_source_emulators
from syncflow.ops.progress import progress_report
from syncflow.roles.connector import run_connector_with_ops
from syncflow.roles.ingest import run_ingest
from syncflow.streams.logging import configure_logging
from syncflow.settings import Settings, get_settings

app = typer.Typer(help="Source systems: emulators, connectors, push ingest, bulk import.", no_args_is_help=True)
console = Console()


def _settings_with_topic(settings: Settings, source: str, topic: str | None) -> Settings:
    if not topic:
        return settings
    src = settings.connectors.sources[source].model_copy(update={"topic": topic})
    connectors = settings.connectors.model_copy(update={"sources": {**settings.connectors.sources, source: src}})
    return settings.model_copy(update={"connectors": connectors})


def _check_source(source: str, entity_type: str | None = None) -> None:
    if source not in SOURCE_ENTITIES:
        raise typer.BadParameter(f"unknown source {source!r}; one of {', '.join(SOURCE_ENTITIES)}")
    if entity_type is not None and entity_type not in SOURCE_ENTITIES[source]:
        raise typer.BadParameter(f"{source} provides {', '.join(SOURCE_ENTITIES[source])}, not {entity_type!r}")


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON lines, CSV, or XML (Yardi) file."),
    source: str = typer.Option(..., "--source", "-s", help="yardi | realpage | insight | lessen360"),
    entity_type: str = typer.Option(..., "--entity", "-e", help="location | resident | service_request | attachment"),
    rejects: Path | None = typer.Option(None, help="Where to write rejected records (default: <file>.rejects.jsonl)."),
    batch_size: int = typer.Option(500, min=1, help="Records per acknowledged batch."),
    topic: str | None = typer.Option(None, help="Override raw.<source>."),
) -> None:
    """Import a file of a source's records onto its raw topic; exits 1 if any were rejected."""
    _check_source(source, entity_type)
    settings = _settings_with_topic(get_settings(), source, topic)
    total = count_rows(file)
    with progress_report(f"import {source} {entity_type}", console, settings.ops.progress_interval_s,
                         total=total) as progress:
        summary = import_file(settings, file, source, entity_type, rejects_path=rejects, batch_size=batch_size,
                              progress=lambda n: progress.update(advance=n))
    table = Table(title=f"import {file.name}")
    for column in ("read", "published", "rejected"):
        table.add_column(column, justify="right")
    table.add_row(str(summary.read), str(summary.published), str(summary.rejected))
    console.print(table)
    console.print(f"batch number {summary.batch_number}")
    if summary.rejected:
        console.print(f"[red]{summary.rejected} rejected, reasons in {summary.rejects_path}")
        raise typer.Exit(1)


@app.command()
def emulate(
    seed: int | None = typer.Option(None, help="World seed (default from settings)."),
    volume: int | None = typer.Option(None, help="Units in the world (default from settings)."),
    host: str | None = typer.Option(None, help="Bind address (default from settings)."),
    invalid_rate: float | None = typer.Option(None, help="Share of records that break a business rule."),
) -> None:
    """Run the four source emulators over one world, on the ports of the sources' base URLs."""
    settings = get_settings()
    configure_logging(settings)
    for source, src in settings.connectors.sources.items():
        console.print(f"{source}: {src.base_url}")
    try:
        asyncio.run(serve_all_source_emulators(settings, seed=seed, volume=volume, host=host,
                                               invalid_rate=invalid_rate))
    except KeyboardInterrupt:
        pass


@app.command()
def connector(
    source: str = typer.Option(..., "--source", "-s", help="yardi | realpage | insight | lessen360"),
    once: bool = typer.Option(False, "--once", help="One incremental pass, then exit."),
) -> None:
    """Pull a source incrementally onto raw.<source>; exits 1 if a pass hit errors (with --once)."""
    _check_source(source)
    settings = get_settings()
    configure_logging(settings)
    try:
        stats = asyncio.run(run_connector_with_ops(settings, source, once))
    except KeyboardInterrupt:
        return
    console.print(f"{source}: {stats.passes} pass(es), {stats.pages} pages, {stats.records_published} records, "
                  f"{stats.records_rejected} dead-lettered, {stats.errors} errors")
    for message in stats.error_messages:
        console.print(f"[red]{message}")
    if stats.errors:
        raise typer.Exit(1)


@app.command()
def ingest() -> None:
    """Serve the push ingest API (POST /ingest/{source}/{entity_type})."""
    settings = get_settings()
    configure_logging(settings)
    console.print(f"ingest API on http://{settings.ingest.host or settings.http_host}:{settings.ingest.port}")
    try:
        asyncio.run(run_ingest(settings))
    except KeyboardInterrupt:
        pass
