"""The `syncflow` command: one entry point for every role and operation.

Each sub-command lives in its own module here and is registered below."""

from __future__ import annotations

import typer

from syncflow.cli import stack, topics

app = typer.Typer(no_args_is_help=True, add_completion=False, help="syncflow: property data integration on Kafka.")
app.add_typer(stack.app, name="stack")
app.add_typer(topics.app, name="topics")


def main() -> None:
    app()
