"""The `syncflow` command: one entry point for every role and operation.

Each command group lives in its own module here and is registered below."""

from __future__ import annotations

import typer

from syncflow.cli import demo, dlq, pause, raw, replay, run, sources, stack, status, sync_out, topics, trace
from syncflow.cli import reconcile, resync
from syncflow.cli import config

app = typer.Typer(no_args_is_help=True, add_completion=False, help="syncflow: property data integration on Kafka.")
app.add_typer(run.app, name="run")
app.add_typer(stack.app, name="stack")
app.add_typer(topics.app, name="topics")
app.add_typer(status.app, name="status")
app.add_typer(replay.app, name="replay")
app.add_typer(dlq.app, name="dlq")
app.add_typer(raw.app, name="raw")
app.add_typer(sources.app, name="sources")
app.add_typer(sync_out.app, name="sync-out")
app.add_typer(config.app, name="config")
app.command("demo")(demo.demo)
app.command("reconcile", help="Compare what a target holds with the common database; --heal resends the drift.")(reconcile.reconcile_command)
app.command("resync", help="Re-emit the current version of selected entities to one target.")(resync.resync_command)
app.command("pause")(pause.pause_command)
app.command("resume")(pause.resume_command)
app.command("trace", help="One record's whole path, from source to every target, as a timeline.")(trace.trace)
app.command("import", help="Bulk-import a file of a source's records onto its raw topic.")(sources.import_command)


def main() -> None:
    app()
