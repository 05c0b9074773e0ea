"""`syncflow run <role>`: start one role in the foreground. The deploy manifests, the compose
file and the demo all start roles through these commands."""

from __future__ import annotations

import asyncio

import typer

from syncflow.streams.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Run one syncflow role in the foreground.")


@app.command("sync-in")
def sync_in(web_port: int = typer.Option(None, help="Port for /metrics, /health and /ready.")) -> None:
    """A sync-in worker (consumer group sync-in). Run more of them to scale."""
    from syncflow.agents.sync_in import run_sync_in

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"sync_in": settings.sync_in.model_copy(update={"web_port": web_port})})
    run_sync_in(settings)


@app.command("sync-out")
def sync_out(
    target: str = typer.Option(..., help="Target system name from the settings, e.g. one or lessen360."),
    web_port: int = typer.Option(None, help="Port for /metrics, /health and /ready."),
) -> None:
    """A sync-out worker for one target (consumer group sync-out.<target>)."""
    from syncflow.agents.sync_out import run_sync_out

    settings = get_settings()
    if target not in settings.sync_out.targets:
        raise typer.BadParameter(f"unknown target {target!r}; configured: {', '.join(settings.sync_out.targets)}")
    if web_port is not None:
        settings = settings.model_copy(update={"sync_out": settings.sync_out.model_copy(update={"web_port": web_port})})
    run_sync_out(settings, target)


@app.command()
def connector(
    source: str = typer.Option(..., help="yardi, realpage, insight or lessen360."),
    once: bool = typer.Option(False, help="One incremental pass, then exit."),
) -> None:
    """A source connector polling its API into raw.<source>."""
    from syncflow.connectors import run_connector

    settings = get_settings()
    if source not in settings.connectors.sources:
        raise typer.BadParameter(f"unknown source {source!r}; configured: {', '.join(settings.connectors.sources)}")
    asyncio.run(run_connector(settings, source, once=once))


@app.command()
def ingest() -> None:
    """The push ingest HTTP API."""
    from syncflow.connectors.ingest import run_ingest

    run_ingest(get_settings())
