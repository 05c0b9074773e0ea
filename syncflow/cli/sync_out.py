"""`syncflow sync-out run|emulate`: a sync-out worker for one target, and the target emulators."""

from __future__ import annotations

import asyncio

import typer

from syncflow.cli.stop_signal import stop_signalled
from syncflow.streams.logging import configure_logging
from syncflow.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, help="Deliver change events to target systems.")


@app.command()
def run(
    target: str = typer.Option(..., help="Target system name from the settings, e.g. one or lessen360."),
    web_port: int = typer.Option(None, help="Port of the worker's web server (default: settings)."),
) -> None:
    """A sync-out worker for one target (consumer group sync-out.<target>). SIGTERM finishes
    the batches in flight, commits and exits."""
    from syncflow.roles.sync_out import run_sync_out

    settings = get_settings()
    if target not in settings.sync_out.targets:
        raise typer.BadParameter(f"unknown target {target!r}; configured: {', '.join(settings.sync_out.targets)}")
    if web_port is not None:
        settings = settings.model_copy(update={"sync_out": settings.sync_out.model_copy(update={"web_port": web_port})})
    run_sync_out(settings, target)


@app.command()
def emulate(
    error_rate: float = typer.Option(0.0, help="Share of requests answered 5xx."),
    latency_ms: float = typer.Option(0.0, help="Added latency per request."),
    rate_limit_per_minute: float = typer.Option(0.0, help="The emulators' own limit (0 = none); beyond it: 429."),
) -> None:
    """Run the ONE and Lessen360 emulators on the ports of the targets' base_url settings."""
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(_emulate(settings, error_rate=error_rate, latency_ms=latency_ms, rate_limit_per_minute=rate_limit_per_minute))


async def _emulate(settings: Settings, **faults: float) -> None:
    from syncflow.emulators.targets import start_all_target_emulators

    runners = await start_all_target_emulators(settings, **faults)
    for name, target in settings.sync_out.targets.items():
        print(f"{name} emulator on {target.base_url} (inspect: {target.base_url}/_emulator/state)", flush=True)
    try:
        await stop_signalled()
    finally:
        for runner in runners:
            await runner.cleanup()

if __name__ == "__main__":
    app()
