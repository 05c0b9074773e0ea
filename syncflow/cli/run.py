"""`syncflow run <role>`: start one role in the foreground. The deploy manifests, the compose
file and the demo start every role through these commands; each delegates to the command
of the package that owns the role."""

from __future__ import annotations

import asyncio
import faulthandler
import signal

import typer

from syncflow.cli import sources, sync_in, sync_out
from syncflow.cli.stop_signal import stop_signalled
from syncflow.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, help="Run one syncflow role in the foreground.")


@app.callback()
def _stack_dumps_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack to the role's log: the first question
    about a worker that stopped making progress is where it waits."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)

app.command("sync-in", help="A sync-in worker (group sync-in); start more to scale.")(sync_in.run)
app.command("sync-out", help="A sync-out worker for one target (group sync-out.<target>).")(sync_out.run)
app.command("connector", help="A source connector polling its API into raw.<source>.")(sources.connector)
app.command("ingest", help="The push ingest HTTP API.")(sources.ingest)
app.command("source-emulators", help="The four source system emulators.")(sources.emulate)
app.command("target-emulators", help="The target system emulators.")(sync_out.emulate)


@app.command()
def emulators(
    host: str = typer.Option(None, help="Bind address for every emulator (default: from the base URLs)."),
    seed: int = typer.Option(None, help="Seed of the generated source world."),
    volume: int = typer.Option(None, help="Units in the generated source world."),
    invalid_rate: float = typer.Option(None, help="Share of source records that break a business rule."),
) -> None:
    """Every source and target emulator in one process (the demo and docker-compose use it)."""
    from syncflow.streams.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)
    asyncio.run(_serve_emulators(settings, host=host, seed=seed, volume=volume, invalid_rate=invalid_rate))


async def _serve_emulators(settings: Settings, *, host: str | None, **world: object) -> None:
    from syncflow.emulators.sources.runner import start_all_source_emulators
    from syncflow.emulators.targets import start_all_target_emulators

    sources_running = await start_all_source_emulators(settings, host=host, **world)  # type: ignore[arg-type]
    targets_running = await start_all_target_emulators(settings, host=host)
    print("emulators ready", flush=True)
    try:
        await stop_signalled()
    finally:
        for emulator in sources_running:
            await emulator.close()
        for runner in targets_running:
            await runner.cleanup()
