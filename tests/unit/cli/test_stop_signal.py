"""The emulator commands' wait: it ends on SIGTERM or SIGINT, and not before."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from syncflow.cli.stop_signal import stop_signalled


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signalled_returns_on_the_signal(sig: signal.Signals) -> None:
    waiting = asyncio.create_task(stop_signalled())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    os.kill(os.getpid(), sig)
    await asyncio.wait_for(waiting, 2.0)
