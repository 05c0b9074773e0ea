"""How the long-running emulator commands wait: until SIGTERM (a container stop) or SIGINT
(Ctrl-C), then they close their servers."""

from __future__ import annotations

import asyncio
import signal


async def stop_signalled() -> None:
    """Return once the process gets SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
