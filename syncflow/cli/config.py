"""`syncflow config check`: load the settings as a role would, print what is in effect with
every secret masked, and exit 1 when they cannot be used."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import ValidationError

from syncflow.errors import ConfigError
from syncflow.sinks.common_db.engine import checked_schema
from syncflow.settings import Settings
from syncflow.settings_check import mask_text, masked

app = typer.Typer(no_args_is_help=True, help="The effective configuration.")


def flat(value: Any, parts: tuple[str, ...] = ()) -> dict[str, Any]:
    """{SYNCFLOW_A__B: value} of a masked settings tree (lists and empty dicts as JSON)."""
    if isinstance(value, dict) and (value or not parts):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flat(inner, (*parts, str(key))))
        return out
    return {"SYNCFLOW_" + "__".join(parts).upper(): value}


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _problems(exc: ValidationError) -> list[str]:
    """One line per invalid value, naming the setting but never echoing the value given."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        name = "SYNCFLOW_" + "__".join(str(part).upper() for part in error["loc"])
        lines.append(f"{name}: {mask_text(error['msg'])}")
    return lines


@app.command("check")
def check(as_json: bool = typer.Option(False, "--json", help="Print the configuration as JSON.")) -> None:
    """Print the effective configuration (environment, env files, defaults), secrets masked:
    API keys, passwords, tokens, secrets and credentials in URLs. Exits 1 on an unknown
    setting or an invalid value."""
    try:
        settings = Settings.load()
        checked_schema(settings)
    except ValidationError as exc:
        typer.echo("config check: invalid configuration", err=True)
        for line in _problems(exc):
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(1) from None
    except ConfigError as exc:
        typer.echo(f"config check: invalid configuration: {mask_text(str(exc))}", err=True)
        raise typer.Exit(1) from None
    tree = masked(settings)
    if as_json:
        typer.echo(json.dumps(tree, indent=2))
        return
    for name, value in flat(tree).items():
        typer.echo(f"{name}={_render(value)}")
    typer.echo("configuration ok", err=True)
