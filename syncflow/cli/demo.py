"""`syncflow demo`: the whole pipeline on the local stack, ending in a reconciled summary."""

from __future__ import annotations

import subprocess
import sys
import time

import typer

from syncflow.cli.stack import SCRIPT
from syncflow.settings import local_stack_dir


def demo(
    volume: int = typer.Option(1000, help="Units in the generated world (about 3.3 source records each)."),
    seed: int = typer.Option(42, help="Seed of the generated world."),
    invalid_rate: float = typer.Option(0.02, help="Share of source records that break a business rule."),
    rounds: int = typer.Option(6, help="Rounds of changes at every source after the initial load."),
    changes: int = typer.Option(150, help="Changes per source and round."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave everything running after the summary."),
    timeout: float = typer.Option(900, help="Give up after this many seconds."),
) -> None:
    """Bring up the local stack, run every role, feed a day of changes, reconcile."""
    from syncflow.demo.demo import DemoPlan, run_demo
    from syncflow.settings import Settings

    if subprocess.call([str(SCRIPT), "up"], env=_env()) != 0:
        raise typer.Exit(1)
    settings = Settings.load()
    plan = DemoPlan(seed=seed, volume=volume, invalid_rate=invalid_rate, change_rounds=rounds,
                    changes_per_round=changes, timeout_s=timeout)
    run_dir = local_stack_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    result = run_demo(settings, plan, run_dir, keep_running=keep_running)
    raise typer.Exit(0 if result.ok else 1)


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "SYNCFLOW_PYTHON": sys.executable}
