"""`syncflow stack up|down|status|restart`: the local stack (deploy/local/stack.sh)."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from syncflow.settings import REPO_ROOT

app = typer.Typer(no_args_is_help=True, help="Run the local stack (Kafka, PostgreSQL, FerretDB) without Docker.")
SCRIPT = REPO_ROOT / "deploy" / "local" / "stack.sh"


def _run(*args: str) -> None:
    env = {**os.environ, "SYNCFLOW_PYTHON": sys.executable}
    raise typer.Exit(subprocess.call([str(SCRIPT), *args], env=env))


@app.command()
def up(with_registry: bool = typer.Option(False, help="Also start the Apicurio schema registry.")) -> None:
    """Install what is missing, start what is down, wait until each service answers."""
    _run("up", *(["--with-registry"] if with_registry else []))


@app.command()
def down() -> None:
    """Stop every service of the local stack."""
    _run("down")


@app.command()
def status() -> None:
    """Show each service up or down (exit 1 when a required one is down)."""
    _run("status")


@app.command()
def restart(service: str) -> None:
    """Restart one service: kafka, postgres, mongo or registry."""
    _run("restart", service)
