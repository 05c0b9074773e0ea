"""`syncflow run sync-in`: a sync-in worker (raw.<source> -> raw store, common database,
changes.<entity_type>). Scale by starting more workers with distinct --web-port."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The sync-in worker.")


@app.callback()
def main() -> None:
    """The sync-in worker."""


@app.command("run")
def run(
    web_port: int = typer.Option(None, help="Port of /health, /ready and /metrics (default: settings.sync_in.web_port)."),
    group_id: str = typer.Option(None, help="Consumer group / app id (default: settings.sync_in.group_id)."),
    topic_suffix: str = typer.Option(None, help="Suffix of every topic sync-in reads and writes (tests, benchmarks)."),
    loglevel: str = typer.Option(None, help="Log level (default: settings.log_level)."),
) -> None:
    """Consume raw.<source> until stopped."""
    from syncflow.roles.sync_in import run_sync_in
    from syncflow.streams.logging import configure_logging
    from syncflow.settings import Settings

    settings = Settings.load()
    overrides = {
        k: v
        for k, v in {"web_port": web_port, "group_id": group_id, "topic_suffix": topic_suffix}.items()
        if v is not None
    }
    if overrides:
        settings = settings.model_copy(update={"sync_in": settings.sync_in.model_copy(update=overrides)})
    configure_logging(settings)
    run_sync_in(settings, loglevel=loglevel)


if __name__ == "__main__":
    app()
