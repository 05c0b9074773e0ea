"""The priority buffer is a bounded window: with a backlog far larger than
`sync_out.buffer_max`, the worker never holds more than that many fetched records, and the
backlog still drains completely."""

from __future__ import annotations

from typing import Any

from syncflow.emulators.targets import emulator_state

from .conftest import delivered_versions, fast_settings, location, pointing_at, wait_for


async def test_a_large_backlog_never_fills_the_buffer_beyond_its_bound(so_settings, one_emulator, events, start_worker) -> None:
    buffer_max, batch_size, entities, versions = 60, 25, 60, 15
    backlog = entities * versions
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, buffer_max=buffer_max, batch_size=batch_size),
                    "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    # an entity's versions next to each other: a batch takes one version per entity, so a
    # fetch brings more than a batch can serve and the buffer fills up to its bound
    events.send([events.record("location", f"loc-{i}", v, location(i, name=f"v{v}"))
                 for i in range(entities) for v in range(1, versions + 1)])
    w = await start_worker(s, "one")

    # every record enters the buffer through add(): watch the count right after each one
    buffer = w.worker.buffer
    sizes: list[int] = []
    add = buffer.add

    def watched_add(*args: Any, **kwargs: Any) -> None:
        add(*args, **kwargs)
        sizes.append(len(buffer))

    buffer.add = watched_add  # type: ignore[method-assign]
    await wait_for(lambda: len(state.received) == backlog, timeout=120, what=f"{backlog} deliveries")
    await w.stop()

    assert len(sizes) >= backlog  # every record was watched going in
    assert max(sizes) <= buffer_max, f"the buffer held {max(sizes)} records, buffer_max is {buffer_max}"
    assert max(sizes) >= buffer_max // 2, "the backlog never filled the window: the bound was not exercised"
    assert delivered_versions(state) == {f"loc-{i}": list(range(1, versions + 1)) for i in range(entities)}
