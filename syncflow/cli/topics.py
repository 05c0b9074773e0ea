"""`syncflow topics create|list`: the topic catalogue on the broker."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from syncflow.streams.admin import create_topics
from syncflow.settings import get_settings
from syncflow.streams.topics import catalogue

app = typer.Typer(no_args_is_help=True, help="Create and list syncflow's topics.")


@app.command()
def create(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Create every topic of the catalogue that does not exist yet."""
    result = create_topics(get_settings())
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for name, state in result.items():
        print(f"{state:8} {name}")


@app.command("list")
def list_() -> None:
    """Show the catalogue: partitions, retention, cleanup policy."""
    table = Table("topic", "partitions", "retention (h)", "cleanup")
    for spec in catalogue(get_settings()):
        cfg = spec.topic_config()
        table.add_row(spec.name, str(spec.partitions), f"{spec.retention_ms / 3_600_000:g}", cfg["cleanup.policy"])
    Console().print(table)
